//! Reading EndpointSlices from text, as `kubectl get endpointslices -o
//! yaml|json` prints them — and the Service beside them, as `kubectl get
//! service,endpointslices -o yaml` prints both, for its weights annotation
//! ([`crate::weights`]).
//!
//! Accepted: one `EndpointSlice` or `Service`; a `List` (what kubectl
//! prints, also of mixed kinds), an `EndpointSliceList` or a `ServiceList`
//! (what the API returns) of them; a stream of YAML documents separated by
//! `---`, each one of those; the same in JSON (objects one after another,
//! or a JSON array of them). An item of a list without a `kind` is taken as
//! the list's kind (an EndpointSlice in a `List`). Any other kind is
//! refused, naming it: a file of the wrong objects is far more often a
//! mistake than something to skip. Documents that are empty or only
//! comments are skipped, but text with no document at all is an error: an
//! empty file is far more often a half-written one than a Service with no
//! endpoints (write `kind: List` with `items: []` for that).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use k8s_openapi::api::core::v1::Service;
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

/// The objects a text holds, in the order they appear.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedObjects {
    /// Every EndpointSlice.
    pub slices: Vec<EndpointSlice>,
    /// Every Service (for its weights annotation).
    pub services: Vec<Service>,
}

const EXPECTED: &str =
    "expected an EndpointSlice, a Service, a List, an EndpointSliceList or a ServiceList";

/// Parses EndpointSlices from YAML or JSON text (in any shape
/// [`parse_objects`] accepts); Services in it are accepted and left out.
pub fn parse_endpoint_slices(text: &str) -> Result<Vec<EndpointSlice>, ParseError> {
    parse_objects(text).map(|objects| objects.slices)
}

/// Parses the EndpointSlices and Services in YAML or JSON text, as
/// `kubectl get service,endpointslices -o yaml|json` prints them.
///
/// Accepted: one `EndpointSlice` or `Service`; a `List` (also of mixed
/// kinds), an `EndpointSliceList` or a `ServiceList` of them (an item
/// without `kind` is taken as the list's kind, an EndpointSlice in a
/// `List`); a stream of YAML documents separated by `---`, each one of
/// those; the same in JSON (objects one after another, or an array). Other
/// kinds are refused, naming them. Documents that are empty or only comments
/// are skipped, but text with no document at all is refused (an empty file
/// is more often half-written than a Service with no endpoints; write
/// `kind: List` with `items: []` for that). Errors carry line, column and
/// the path to the field.
pub fn parse_objects(text: &str) -> Result<ParsedObjects, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start();
    let mut objects = ParsedObjects::default();
    let documents = if first.starts_with('{') || first.starts_with('[') {
        parse_json(text, &mut objects)?
    } else {
        parse_yaml(text, &mut objects)?
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
    Ok(objects)
}

/// The kind of one object, judged by its `kind` (or, in a list, the
/// list's kind when it has none).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Slice,
    Service,
    /// Refused when deserialized, so the error carries its position.
    Other(String),
}

fn kind_of(object: &Value, default: &Kind) -> Kind {
    match object.get("kind").and_then(Value::as_str) {
        Some("EndpointSlice") => Kind::Slice,
        Some("Service") => Kind::Service,
        Some(kind) => Kind::Other(kind.to_owned()),
        None => default.clone(),
    }
}

/// What a document holds, judged by its `kind`: one object, or a list of
/// objects (of these kinds, in order).
enum Shape {
    One(Kind),
    List(Vec<Kind>),
    Array(Vec<Kind>),
    Empty,
}

fn shape(document: &Value) -> Result<Shape, String> {
    let items = |items: Option<&Value>, default: Kind| {
        items
            .and_then(Value::as_array)
            .map(|items| items.iter().map(|i| kind_of(i, &default)).collect())
            .unwrap_or_default()
    };
    match document {
        Value::Null => Ok(Shape::Empty),
        Value::Array(_) => Ok(Shape::Array(items(Some(document), Kind::Slice))),
        Value::Object(map) => match map.get("kind").and_then(Value::as_str) {
            Some("EndpointSlice") => Ok(Shape::One(Kind::Slice)),
            Some("Service") => Ok(Shape::One(Kind::Service)),
            Some("List" | "EndpointSliceList") => {
                Ok(Shape::List(items(map.get("items"), Kind::Slice)))
            }
            Some("ServiceList") => Ok(Shape::List(items(map.get("items"), Kind::Service))),
            Some(kind) => Err(format!("found kind {kind:?}, {EXPECTED}")),
            None => Err(format!("the document has no `kind`; {EXPECTED}")),
        },
        other => Err(format!("found a {}, {EXPECTED}", type_name(other))),
    }
}

/// Deserializes one object of a known kind into `out`, straight from the
/// text's deserializer, so errors keep their line, column and path.
struct ObjectSeed<'a> {
    kind: &'a Kind,
    out: &'a mut ParsedObjects,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.kind {
            Kind::Slice => self
                .out
                .slices
                .push(EndpointSlice::deserialize(deserializer)?),
            Kind::Service => self.out.services.push(Service::deserialize(deserializer)?),
            Kind::Other(kind) => {
                return Err(de::Error::custom(format!(
                    "found kind {kind:?}, {EXPECTED}"
                )));
            }
        }
        Ok(())
    }
}

/// A sequence of objects whose kinds are known in advance.
struct ItemsSeed<'a> {
    kinds: &'a [Kind],
    out: &'a mut ParsedObjects,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let fallback = Kind::Slice;
        let mut index = 0;
        loop {
            let kind = self.kinds.get(index).unwrap_or(&fallback);
            let seed = ObjectSeed {
                kind,
                out: &mut *self.out,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// A list object: its `items` through [`ItemsSeed`], everything else skipped.
struct ListSeed<'a>(ItemsSeed<'a>);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ItemsSeed { kinds, out } = self.0;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(ItemsSeed {
                    kinds,
                    out: &mut *out,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Deserializes a document of a known shape into `out`.
fn read_shape<'de, D: Deserializer<'de>>(
    shape: &Shape,
    deserializer: D,
    out: &mut ParsedObjects,
) -> Result<(), D::Error> {
    match shape {
        Shape::Empty => Ok(()),
        Shape::One(kind) => ObjectSeed { kind, out }.deserialize(deserializer),
        Shape::List(kinds) => ListSeed(ItemsSeed { kinds, out }).deserialize(deserializer),
        Shape::Array(kinds) => ItemsSeed { kinds, out }.deserialize(deserializer),
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

fn parse_json(text: &str, out: &mut ParsedObjects) -> Result<usize, ParseError> {
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
        let shape = shape(&document).map_err(located)?;
        let mut deserializer = serde_json::Deserializer::from_str(raw);
        read_shape(&shape, &mut deserializer, out).map_err(|e| json_error(e, start))?;
    }
    Ok(documents)
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

/// A `List` or `EndpointSliceList` document whose items all read as
/// EndpointSlices (kind `EndpointSlice` or none), as `kubectl get
/// endpointslices -o yaml` prints them, read in one pass straight into the
/// slices. The general path parses a document into a tree first, to learn
/// every item's kind before reading it (kubectl prints `kind` after the
/// other fields); at 1,000 endpoints the tree was a fifth of reading the
/// file (median 10.7 → 8.5 ms), on the way from a change to its plan.
/// `None` for anything else: the general path then reads the document, or
/// says what is wrong with it, as before.
fn list_of_slices(text: &str) -> Option<Vec<EndpointSlice>> {
    #[derive(Deserialize)]
    struct SliceList {
        kind: Option<String>,
        #[serde(default)]
        items: Vec<EndpointSlice>,
    }
    let list: SliceList = serde_yaml_ng::from_str(text).ok()?;
    matches!(list.kind.as_deref(), Some("List" | "EndpointSliceList")).then_some(list.items)
}

fn parse_yaml(text: &str, out: &mut ParsedObjects) -> Result<usize, ParseError> {
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
        if let Some(mut slices) = list_of_slices(&document.text) {
            out.slices.append(&mut slices);
            continue;
        }
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
        let shape = shape(&value).map_err(located)?;
        if matches!(shape, Shape::Empty) {
            documents -= 1;
            continue;
        }
        // The objects come from the value already parsed (parsing 1,000
        // endpoints of YAML twice was a fifth of a change's time at 1,000
        // members); only when that fails is the text deserialized again, for
        // an error with its line and column.
        let mut objects = ParsedObjects::default();
        if read_shape(&shape, &value, &mut objects).is_ok() {
            out.slices.append(&mut objects.slices);
            out.services.append(&mut objects.services);
        } else {
            let deserializer = serde_yaml_ng::Deserializer::from_str(&document.text);
            read_shape(&shape, deserializer, out).map_err(yaml_error)?;
        }
    }
    Ok(documents)
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

    /// `object` as the one item of a `kind: List`, as kubectl prints it.
    fn list_of(object: &str) -> String {
        let items: String = object
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("- {l}\n")
                } else {
                    format!("  {l}\n")
                }
            })
            .collect();
        format!("apiVersion: v1\nkind: List\nitems:\n{items}")
    }

    #[test]
    fn one_slice_a_list_and_a_document_stream() {
        assert_eq!(parse_endpoint_slices(SLICE).unwrap().len(), 1);
        let list = list_of(SLICE);
        assert_eq!(parse_endpoint_slices(&list).unwrap().len(), 1);
        let stream = format!("---\n{SLICE}---\n# a comment only\n---\n{SLICE}...\n");
        assert_eq!(parse_endpoint_slices(&stream).unwrap().len(), 2);
    }

    /// A list of slices alone takes the one-pass path and reads as the
    /// general path reads it; a list with a Service in it, or of another
    /// kind, is left to the general path.
    #[test]
    fn a_list_of_slices_reads_in_one_pass_as_the_general_path_reads_it() {
        let list = list_of(SLICE);
        let fast = list_of_slices(&list).expect("a list of slices");
        let value: Value = serde_yaml_ng::from_str(&list).unwrap();
        let mut general = ParsedObjects::default();
        read_shape(&shape(&value).unwrap(), &value, &mut general).unwrap();
        assert_eq!(fast, general.slices);
        assert_eq!(fast.len(), 1);
        for other in [
            list.replace("kind: List", "kind: ServiceList"),
            list.replace("kind: EndpointSlice", "kind: Service"),
            list.replace("kind: List\n", ""),
            include_str!("../tests/fixtures/mixed.yaml").to_owned(),
        ] {
            assert_eq!(list_of_slices(&other), None, "{other}");
        }
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
        let in_list = parse_endpoint_slices("kind: List\nitems:\n- kind: Pod\n  apiVersion: v1\n")
            .unwrap_err();
        assert_eq!(in_list.line, 3, "{in_list}");
        assert!(in_list.message.contains("found kind \"Pod\""), "{in_list}");
        let in_json =
            parse_endpoint_slices("{\"kind\": \"List\", \"items\": [\n{\"kind\": \"ConfigMap\"}]}")
                .unwrap_err();
        assert_eq!(in_json.line, 2, "{in_json}");
        assert!(
            in_json.message.contains("found kind \"ConfigMap\""),
            "{in_json}"
        );
        assert!(parse_endpoint_slices("").is_err());
        assert!(parse_endpoint_slices("# nothing\n---\n").is_err());
        assert!(
            parse_endpoint_slices("kind: List\nitems: []\n")
                .unwrap()
                .is_empty()
        );
    }

    const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: db
  annotations:
    ringleader.io/weights: db-3=2
spec:
  clusterIP: None
  ports:
  - port: 7000
";

    /// What `kubectl get service,endpointslices -o yaml` prints: one List
    /// holding both kinds.
    #[test]
    fn a_mixed_list_a_stream_and_json_give_slices_and_the_service() {
        let indent = |doc: &str| {
            doc.lines()
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        format!("- {l}\n")
                    } else {
                        format!("  {l}\n")
                    }
                })
                .collect::<String>()
        };
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}{}",
            indent(SERVICE),
            indent(SLICE)
        );
        let objects = parse_objects(&list).unwrap();
        assert_eq!((objects.slices.len(), objects.services.len()), (1, 1));
        let annotations = objects.services[0].metadata.annotations.clone().unwrap();
        assert_eq!(annotations["ringleader.io/weights"], "db-3=2");
        let stream = format!("{SERVICE}---\n{SLICE}");
        let objects = parse_objects(&stream).unwrap();
        assert_eq!((objects.slices.len(), objects.services.len()), (1, 1));
        assert_eq!(parse_endpoint_slices(&stream).unwrap().len(), 1);
        let json = r#"{"kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"db"}},{"kind":"EndpointSlice","addressType":"IPv4","endpoints":[]}]}"#;
        let objects = parse_objects(json).unwrap();
        assert_eq!((objects.slices.len(), objects.services.len()), (1, 1));
        let services =
            parse_objects(r#"{"kind":"ServiceList","items":[{"metadata":{"name":"db"}}]}"#)
                .unwrap();
        assert_eq!((services.slices.len(), services.services.len()), (0, 1));
    }

    #[test]
    fn an_error_in_a_mixed_list_is_located_in_its_item() {
        let broken = "kind: List\nitems:\n- kind: Service\n  apiVersion: v1\n  metadata: {name: db}\n- kind: EndpointSlice\n  addressType: IPv4\n  endpoints:\n  - addresses: [10.0.0.1]\n    conditions: {ready: maybe}\n";
        let error = parse_objects(broken).unwrap_err();
        assert_eq!(error.line, 10, "{error}");
        assert!(
            error
                .message
                .contains("items[1].endpoints[0].conditions.ready"),
            "{error}"
        );
    }
}
