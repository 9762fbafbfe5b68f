//! Reading EndpointSlices from text, as `kubectl get endpointslices -o
//! yaml|json` prints them.
//!
//! Accepted: one `EndpointSlice`; a `List` (what kubectl prints) or an
//! `EndpointSliceList` (what the API returns) of them; a stream of YAML
//! documents separated by `---`, each one of those; the same in JSON
//! (objects one after another, or a JSON array of slices). Documents that
//! are empty or only comments are skipped, but text with no document at all
//! is an error: an empty file is far more often a half-written one than a
//! Service with no endpoints (write `kind: List` with `items: []` for that).

use serde::Deserialize;
use serde_json::Value;

use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Text that is not EndpointSlices, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column of the problem.
    pub column: usize,
    /// What is wrong, with the path to the field when known
    /// (`items[0].endpoints[2].conditions.ready: invalid type: …`).
    pub message: String,
}

#[derive(Deserialize)]
struct SliceList {
    #[serde(default)]
    items: Vec<EndpointSlice>,
}

const EXPECTED: &str = "expected an EndpointSlice, a List or an EndpointSliceList";

/// Parses EndpointSlices from YAML or JSON text (see the [module docs](self)).
pub fn parse_endpoint_slices(text: &str) -> Result<Vec<EndpointSlice>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start();
    let (slices, documents) = if first.starts_with('{') || first.starts_with('[') {
        parse_json(text)?
    } else {
        parse_yaml(text)?
    };
    if documents == 0 {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!(
                "no document found ({EXPECTED}); an empty file is refused as likely half-written"
            ),
        });
    }
    Ok(slices)
}

/// What a document holds, judged by its `kind`.
enum Shape {
    Slice,
    List,
    Array,
    Empty,
}

fn shape(document: &Value) -> Result<Shape, String> {
    match document {
        Value::Null => Ok(Shape::Empty),
        Value::Array(_) => Ok(Shape::Array),
        Value::Object(map) => match map.get("kind").and_then(Value::as_str) {
            Some("EndpointSlice") => Ok(Shape::Slice),
            Some("List" | "EndpointSliceList") => Ok(Shape::List),
            Some(kind) => Err(format!("found kind {kind:?}, {EXPECTED}")),
            None => Err(format!("the document has no `kind`; {EXPECTED}")),
        },
        other => Err(format!("found a {}, {EXPECTED}", type_name(other))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn without_suffix(message: String, line: usize, column: usize) -> String {
    let suffix = format!(" at line {line} column {column}");
    match message.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}

fn parse_json(text: &str) -> Result<(Vec<EndpointSlice>, usize), ParseError> {
    let json_error = |e: serde_json::Error, base: usize| {
        let (base_line, base_column) = position(text, base);
        let (line, column) = (e.line(), e.column());
        ParseError {
            line: base_line + line.saturating_sub(1),
            column: if line <= 1 {
                base_column + column.saturating_sub(1)
            } else {
                // serde_json says column 0 for an error found on a newline.
                column.max(1)
            },
            message: without_suffix(e.to_string(), line, column),
        }
    };
    let mut slices = Vec::new();
    let mut documents = 0;
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let before = stream.byte_offset();
        let document = match stream.next() {
            None => break,
            Some(Ok(document)) => document,
            Some(Err(e)) => return Err(json_error(e, 0)),
        };
        let end = stream.byte_offset();
        let skipped = text[before..end].len() - text[before..end].trim_start().len();
        let start = before + skipped;
        let raw = &text[start..end];
        documents += 1;
        let located = |message: String| {
            let (line, column) = position(text, start);
            ParseError {
                line,
                column,
                message,
            }
        };
        match shape(&document).map_err(located)? {
            Shape::Empty => {}
            Shape::Slice => {
                slices.push(serde_json::from_str(raw).map_err(|e| json_error(e, start))?);
            }
            Shape::List => {
                let list: SliceList =
                    serde_json::from_str(raw).map_err(|e| json_error(e, start))?;
                slices.extend(list.items);
            }
            Shape::Array => {
                let items: Vec<EndpointSlice> =
                    serde_json::from_str(raw).map_err(|e| json_error(e, start))?;
                slices.extend(items);
            }
        }
    }
    Ok((slices, documents))
}

/// One YAML document: its text (the `---` marker blanked out so columns
/// stay right) and the 0-based line where it starts.
struct YamlDocument<'a> {
    text: std::borrow::Cow<'a, str>,
    first_line: usize,
}

/// Splits a YAML stream at `---` lines (and drops `...` end markers).
fn split_documents(text: &str) -> Vec<YamlDocument<'_>> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut first_line = 0;
    let mut offset = 0;
    let mut marker_line: Option<String> = None;
    let mut push = |start: usize, end: usize, first_line: usize, marker: Option<String>| {
        let body = &text[start..end];
        let text = match marker {
            None => std::borrow::Cow::Borrowed(body),
            Some(blanked) => {
                let rest = body.split_once('\n').map_or("", |(_, rest)| rest);
                std::borrow::Cow::Owned(format!("{blanked}\n{rest}"))
            }
        };
        documents.push(YamlDocument { text, first_line });
    };
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_marker = content == "---"
            || content.starts_with("--- ")
            || content.starts_with("---\t")
            || content == "..."
            || content.starts_with("... ");
        if is_marker {
            if offset > start || marker_line.is_some() {
                push(start, offset, first_line, marker_line.take());
            }
            start = offset;
            first_line = number;
            // Keep what follows a `---` on its line (`--- {…}`), blanking
            // the marker so columns stay right.
            marker_line = Some(
                content
                    .strip_prefix("---")
                    .map_or_else(String::new, |rest| format!("   {rest}")),
            );
        }
        offset += line.len();
    }
    if offset > start || marker_line.is_some() {
        push(start, offset, first_line, marker_line);
    }
    documents
}

fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

fn parse_yaml(text: &str) -> Result<(Vec<EndpointSlice>, usize), ParseError> {
    let mut slices = Vec::new();
    let mut documents = 0;
    for document in split_documents(text) {
        if is_blank_yaml(&document.text) {
            continue;
        }
        documents += 1;
        let yaml_error = |e: serde_yaml_ng::Error| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            ParseError {
                line: document.first_line + line,
                column,
                message: without_suffix(e.to_string(), line, column),
            }
        };
        let value: Value = serde_yaml_ng::from_str(&document.text).map_err(yaml_error)?;
        let located = |message: String| {
            // Point at the first line with content.
            let skip = document
                .text
                .lines()
                .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .unwrap_or(0);
            let column = document
                .text
                .lines()
                .nth(skip)
                .map_or(1, |l| l.len() - l.trim_start().len() + 1);
            ParseError {
                line: document.first_line + skip + 1,
                column,
                message,
            }
        };
        match shape(&value).map_err(located)? {
            Shape::Empty => documents -= 1,
            Shape::Slice => {
                slices.push(serde_yaml_ng::from_str(&document.text).map_err(yaml_error)?)
            }
            Shape::List => {
                let list: SliceList =
                    serde_yaml_ng::from_str(&document.text).map_err(yaml_error)?;
                slices.extend(list.items);
            }
            Shape::Array => {
                let items: Vec<EndpointSlice> =
                    serde_yaml_ng::from_str(&document.text).map_err(yaml_error)?;
                slices.extend(items);
            }
        }
    }
    Ok((slices, documents))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE: &str = "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-abc
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  conditions:
    ready: true
";

    #[test]
    fn one_slice_a_list_and_a_document_stream() {
        assert_eq!(parse_endpoint_slices(SLICE).unwrap().len(), 1);
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            SLICE
                .lines()
                .enumerate()
                .map(|(i, l)| if i == 0 {
                    format!("- {l}\n")
                } else {
                    format!("  {l}\n")
                })
                .collect::<String>()
        );
        assert_eq!(parse_endpoint_slices(&list).unwrap().len(), 1);
        let stream = format!("---\n{SLICE}---\n# a comment only\n---\n{SLICE}...\n");
        assert_eq!(parse_endpoint_slices(&stream).unwrap().len(), 2);
    }

    #[test]
    fn json_objects_lists_and_arrays() {
        let slice = r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"a"},"addressType":"IPv6","endpoints":[{"addresses":["fd00::1"]}]}"#;
        assert_eq!(parse_endpoint_slices(slice).unwrap().len(), 1);
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{slice},{slice}]}}"#);
        assert_eq!(parse_endpoint_slices(&list).unwrap().len(), 2);
        assert_eq!(
            parse_endpoint_slices(&format!("[{slice}]\n{slice}"))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_type_error_is_located_in_the_right_document() {
        let broken = format!(
            "{SLICE}---\n{}",
            SLICE.replace("ready: true", "ready: maybe")
        );
        let error = parse_endpoint_slices(&broken).unwrap_err();
        assert_eq!((error.line, error.column), (19, 12), "{error}");
        assert!(
            error.message.contains("endpoints[0].conditions.ready"),
            "{error}"
        );
        assert!(error.message.contains("invalid type"), "{error}");
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let error = parse_endpoint_slices("{\"kind\": \"EndpointSlice\",\n  \"addressType\": 4}")
            .unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(
            error.message.contains("invalid type: integer `4`"),
            "{error}"
        );
        let error = parse_endpoint_slices("{\"kind\": \"List\", \"items\": [\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let error = parse_endpoint_slices("kind: List\nitems:\n  - {a: [\n").unwrap_err();
        assert_eq!(error.line, 4, "{error}");
    }

    #[test]
    fn other_kinds_and_empty_text_are_refused() {
        let error = parse_endpoint_slices("---\nkind: Pod\n").unwrap_err();
        assert_eq!((error.line, error.column), (2, 1));
        assert!(error.message.contains("found kind \"Pod\""));
        let in_list =
            parse_endpoint_slices("kind: List\nitems:\n- kind: Service\n  apiVersion: v1\n")
                .unwrap_err();
        assert_eq!(in_list.line, 3, "{in_list}");
        assert!(parse_endpoint_slices("").is_err());
        assert!(parse_endpoint_slices("# nothing\n---\n").is_err());
        assert!(
            parse_endpoint_slices("kind: List\nitems: []\n")
                .unwrap()
                .is_empty()
        );
    }
}
