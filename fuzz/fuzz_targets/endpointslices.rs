//! Arbitrary text as EndpointSlices (YAML or JSON, as `kubectl get
//! endpointslices -o yaml|json` prints them).
//!
//! Checks: parsing and deriving members never panic; a parse error points at
//! a line and column inside the text; `members_from_text` agrees with
//! parsing then deriving; the member set does not depend on the order of the
//! slices; every member has an id and an address. A Service in the text
//! (its `ringleader.io/weights` annotation) changes weights only: the same
//! members, or an error for a malformed annotation. Read with the file
//! source's item cache, the text reads as read afresh.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringleader_watch::{
    ItemCache, members_from_slices, members_from_text, parse_endpoint_slices, parse_objects,
    parse_objects_cached,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    match parse_endpoint_slices(text) {
        Err(error) => {
            assert!(error.line >= 1 && error.column >= 1, "{error:?}");
            // The position lies inside the text, with lines counted as JSON
            // counts them (`\n`) or as YAML does (also a lone `\r`, NEL, LS,
            // PS), and the end of the input as the start of the line after
            // the last. Columns count characters for YAML but bytes for JSON
            // (serde_json's own column): bound them by the length in bytes.
            let inside = |lines: &[&str]| {
                error.line <= lines.len() + 1
                    && error.column <= lines.get(error.line - 1).map_or(0, |l| l.len()) + 1
            };
            let json_lines: Vec<&str> = text.split('\n').collect();
            let yaml_lines = yaml_lines(text);
            // Where the two counts differ (a lone `\r`, NEL, LS or PS), a
            // multi-document file mixes them: the document's first line is
            // counted by `\n`, the line inside it as YAML counts. Only the
            // line is bounded then.
            let mixed = json_lines.len() != yaml_lines.len() && error.line <= yaml_lines.len() + 1;
            assert!(
                mixed || inside(&json_lines) || inside(&yaml_lines),
                "line {}, column {} is outside the text ({} lines): {error:?}",
                error.line,
                error.column,
                yaml_lines.len()
            );
            assert!(!error.message.is_empty());
            assert!(members_from_text(text, None).is_err());
        }
        Ok(slices) => {
            let members = members_from_slices(&slices);
            let mut reversed = slices.clone();
            reversed.reverse();
            let members_reversed = members_from_slices(&reversed);
            // The member set never depends on slice order.
            match (&members, &members_reversed) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "the member set depends on slice order")
                }
                (Err(a), Err(b)) => assert_eq!(a.problems.len(), b.problems.len()),
                _ => panic!("slice order decides validity: {members:?} vs {members_reversed:?}"),
            }
            let via_text = members_from_text(text, None);
            let with_service = parse_objects(text).is_ok_and(|o| !o.services.is_empty());
            let ids = |set: &ringleader_watch::MemberSet| -> Vec<String> {
                set.iter().map(|m| m.id.as_str().to_owned()).collect()
            };
            match (&members, &via_text) {
                (Ok(a), Ok(b)) if with_service => assert_eq!(ids(a), ids(b)),
                // With no Service in the text, every member has weight 1.
                (Ok(a), Ok(b)) => assert_eq!(&ringleader_watch::Weights::default().apply(a.clone()), b),
                (Err(_), Err(_)) => {}
                // The Service's annotation (or two Services) may be refused.
                (Ok(_), Err(_)) if with_service => {}
                _ => panic!("members_from_text disagrees: {members:?} vs {via_text:?}"),
            }
            if let Ok(set) = &members {
                for member in set.iter() {
                    assert!(!member.id.as_str().is_empty(), "{member:?}");
                    assert!(!member.addresses.is_empty(), "{member:?}");
                }
            }
        }
    }
    // Filtering by Service never panics either.
    let _ = members_from_text(text, Some("db"));
    // The file source's item cache changes nothing: read with it (empty,
    // then holding this text's items), the text reads as read afresh.
    let afresh = parse_objects(text);
    let mut cache = ItemCache::default();
    assert_eq!(parse_objects_cached(text, &mut cache), afresh, "first read with the cache");
    assert_eq!(parse_objects_cached(text, &mut cache), afresh, "read again from the cache");
});

/// Lines as YAML 1.1 (libyaml) breaks them: `\r\n`, `\n`, `\r`, NEL, LS, PS.
fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = match c {
            '\r' => {
                if let Some(&(_, '\n')) = chars.peek() {
                    chars.next();
                    lines.push(&text[start..i]);
                    start = i + 2;
                    continue;
                }
                true
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => true,
            _ => false,
        };
        if is_break {
            lines.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    lines.push(&text[start..]);
    lines
}
