//! Inputs the fuzzers found (fuzz/, docs/fuzzing.md), each pinned as the
//! behaviour it should have had.

use ringleader_watch::{members_from_text, parse_endpoint_slices};

/// fuzz/endpointslices: serde_json reports column 0 for an error found on
/// a newline (`t` then a line break where `true` was meant), and the error
/// said "line 2, column 0" although columns are 1-based.
#[test]
fn a_json_error_on_a_line_break_has_a_one_based_column() {
    let error = parse_endpoint_slices("{\"kind\": \"List\", \"items\": [{\"a\": t\nrue}]}")
        .expect_err("not JSON");
    assert_eq!(error.line, 2, "{error}");
    assert!(error.column >= 1, "{error}");
    assert!(
        error.to_string().starts_with("line 2, column 1:"),
        "{error}"
    );
    assert!(members_from_text("{\"kind\": t\nrue}", None).is_err());
}

/// fuzz/endpointslices: YAML counts a lone carriage return as a line break
/// (as do NEL, LS and PS), so error lines follow YAML's count, not the
/// count of `\n`; they never point past the end of the text by that count.
#[test]
fn yaml_errors_after_lone_carriage_returns_stay_inside_the_text() {
    for text in [
        "kind: List\ritems: [\r",
        "kind: List\r\ritems:\r- a\rb: c: d\r",
        "kiind: List\n[]\u{fffd}",
    ] {
        let error = parse_endpoint_slices(text).expect_err("not EndpointSlices");
        let yaml_lines = text.split(['\n', '\r']).count();
        assert!(error.line >= 1 && error.column >= 1, "{error}");
        assert!(error.line <= yaml_lines + 1, "{text:?}: {error}");
    }
}

/// fuzz/endpointslices: two slices without a name that carry the same
/// endpoint with different zones. Unnamed slices are ordered by their
/// position (`#0 (unnamed)`), so the member's zone depended on the order of
/// the slices, against the rule that only the set of slices counts.
#[test]
fn unnamed_slices_merge_the_same_in_any_order() {
    let slice = |zone: &str| {
        format!(
            "- kind: EndpointSlice\n  apiVersion: discovery.k8s.io/v1\n  metadata: {{}}\n  \
             addressType: IPv4\n  endpoints:\n  - addresses: [10.0.0.1]\n    hostname: db-0\n    \
             zone: {zone}\n"
        )
    };
    let text = format!("kind: List\nitems:\n{}{}", slice("a"), slice("b"));
    let slices = parse_endpoint_slices(&text).expect("two slices");
    let mut reversed = slices.clone();
    reversed.reverse();
    assert_eq!(
        ringleader_watch::members_from_slices(&slices).unwrap(),
        ringleader_watch::members_from_slices(&reversed).unwrap()
    );
}
