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

use std::collections::HashMap;
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
    parse_objects_with(text, None)
}

/// [`parse_objects`] for a text read again and again as it changes (the
/// file source): the items of a kubectl-laid-out `List` of EndpointSlices
/// read before, word for word, are taken from `cache` instead of parsed
/// again ([`ItemCache`]). The same objects, or the same error, as
/// [`parse_objects`] gives.
pub fn parse_objects_cached(
    text: &str,
    cache: &mut ItemCache,
) -> Result<ParsedObjects, ParseError> {
    parse_objects_with(text, Some(cache))
}

fn parse_objects_with(
    text: &str,
    cache: Option<&mut ItemCache>,
) -> Result<ParsedObjects, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start();
    let mut objects = ParsedObjects::default();
    let documents = if first.starts_with('{') || first.starts_with('[') {
        parse_json(text, &mut objects)?
    } else {
        parse_yaml(text, &mut objects, cache)?
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

fn parse_yaml(
    text: &str,
    out: &mut ParsedObjects,
    mut cache: Option<&mut ItemCache>,
) -> Result<usize, ParseError> {
    let mut documents = 0;
    // Items are kept for the next read only if the text is one such list.
    let mut kept = None;
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
        if let Some(cache) = cache.as_deref_mut()
            && let Some((mut slices, items)) = cache.take(&document.text)
        {
            out.slices.append(&mut slices);
            kept = if documents == 1 { Some(items) } else { None };
            continue;
        }
        kept = None;
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
    if let Some(cache) = cache {
        cache.items = kept.unwrap_or_default();
    }
    Ok(documents)
}

/// The EndpointSlices of the last text read with [`parse_objects_cached`],
/// by the text of their item, for a text of one `List` (or
/// `EndpointSliceList`) laid out as kubectl prints it: `items:` at the start
/// of a line, every item a `- ` there too. A file of 1,000 endpoints is
/// 120 KB of YAML, which the YAML scanner reads at 10-25 MB/s: 5-13 ms of
/// the way from a change to its plan, though a change rewrites one slice of
/// ten (a slice holds 100 endpoints) or adds one. Only the items whose text
/// is new are parsed; the cache then holds the items of this text only.
///
/// Reading a list item by item is sound where it is used: in YAML's block
/// layout a line starting with `-` at column 0 inside a column-0 sequence
/// can only start its next entry (what an entry nests is indented). Any
/// text that does not read this way (an alias to another item, a quoted
/// string running over an entry's start, another layout, anything that
/// does not parse) is read whole as before, so it gives the same objects or
/// the same error.
#[derive(Debug, Default)]
pub struct ItemCache {
    items: HashMap<String, EndpointSlice>,
}

impl ItemCache {
    /// The slices of `text` if it is such a list whose items all read,
    /// with the items to keep for the next text. The items found are taken
    /// out of the cache (moved, not copied, into the next one); a text that
    /// does not read this way leaves the cache partly emptied, which costs
    /// only a parse.
    fn take(&mut self, text: &str) -> Option<(Vec<EndpointSlice>, HashMap<String, EndpointSlice>)> {
        #[derive(Deserialize)]
        struct ListHead {
            kind: Option<String>,
            items: Option<IgnoredAny>,
        }
        let (entries, head) = list_entries(text)?;
        let head: ListHead = serde_yaml_ng::from_str(&head).ok()?;
        if head.items.is_some()
            || !matches!(head.kind.as_deref(), Some("List" | "EndpointSliceList"))
        {
            return None;
        }
        let mut slices = Vec::with_capacity(entries.len());
        let mut items = HashMap::with_capacity(entries.len());
        for entry in entries {
            let slice = match self.items.remove(entry) {
                Some(slice) => slice,
                None => {
                    let mut one: Vec<EndpointSlice> = serde_yaml_ng::from_str(entry).ok()?;
                    if one.len() != 1 {
                        return None;
                    }
                    one.pop()?
                }
            };
            items.insert(entry.to_owned(), slice.clone());
            slices.push(slice);
        }
        Some((slices, items))
    }
}

/// The entries of a document's top-level `items:` sequence laid out at
/// column 0, each with its lines, and the document without them (its
/// other keys); `None` for any other layout.
fn list_entries(text: &str) -> Option<(Vec<&str>, String)> {
    let mut offset = 0;
    let mut items_line = None;
    let mut starts: Vec<usize> = Vec::new();
    let mut end = text.len();
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        match items_line {
            None if content == "items:" => items_line = Some((offset, offset + line.len())),
            None => {}
            Some(_) if content == "-" || content.starts_with("- ") => starts.push(offset),
            Some(_) if content.is_empty() || content.starts_with('#') => {}
            // Before the first entry only blank lines and comments: an
            // indented sequence is another layout.
            Some(_) if starts.is_empty() => return None,
            Some(_) if content.starts_with(' ') => {}
            Some(_) => {
                end = offset;
                break;
            }
        }
        offset += line.len();
    }
    let (items_start, _) = items_line?;
    if starts.is_empty() {
        return None;
    }
    let entries = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&end]))
        .map(|(&from, &to)| &text[from..to])
        .collect();
    Some((entries, format!("{}{}", &text[..items_start], &text[end..])))
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

    /// A kubectl-shaped list of `slices` EndpointSlices of `per` endpoints
    /// each (the bench's file, benches/slices.py).
    fn kubectl_list(slices: usize, per: usize, ready: impl Fn(usize) -> bool) -> String {
        let mut text = String::from("apiVersion: v1\nitems:\n");
        for s in 0..slices {
            text += &format!(
                "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  addressType: IPv4\n  metadata:\n    name: db-{s}\n    labels:\n      kubernetes.io/service-name: db\n  endpoints:\n"
            );
            for i in s * per..(s + 1) * per {
                text += &format!(
                    "  - addresses: [\"10.0.{}.{}\"]\n    conditions: {{ready: {}}}\n    targetRef: {{kind: Pod, name: db-{i}}}\n    zone: zone-{}\n",
                    i / 256,
                    i % 256,
                    ready(i),
                    i % 3
                );
            }
        }
        text + "kind: List\nmetadata:\n  resourceVersion: \"\"\n"
    }

    /// The file source reads a changing file with an item cache: every
    /// text reads to the same objects, or fails with the same error, as
    /// read afresh, whether its items come from the cache, are new, or the
    /// text cannot be read item by item at all (and then nothing is kept).
    #[test]
    fn a_text_read_with_the_item_cache_reads_as_read_afresh() {
        let base = kubectl_list(5, 20, |_| true);
        let one_more = kubectl_list(6, 20, |_| true);
        let one_down = kubectl_list(5, 20, |i| i != 42);
        let commented = base.replace("- apiVersion", "# a comment\n- apiVersion");
        // An alias into an earlier item: that item alone does not read.
        let aliased = base
            .replacen("zone: zone-0", "zone: &z zone-0", 1)
            .replace("zone: zone-2", "zone: *z");
        // A quoted string running over a line that looks like an entry.
        let quoted = base.replacen(
            "kubernetes.io/service-name: db",
            "kubernetes.io/service-name: \"db\n- apiVersion: x\"",
            1,
        );
        let indented = base.replace("\n- ", "\n  - ").replace("\n  ", "\n    ");
        let broken = base.replacen("{ready: true}", "{ready: maybe}", 1);
        let stream = format!("{base}---\n{one_more}");
        let mut cache = ItemCache::default();
        for (name, text, cached_items) in [
            ("base", &base, 5),
            ("base again", &base, 5),
            ("one slice more", &one_more, 6),
            ("one endpoint down", &one_down, 5),
            ("comments between items", &commented, 5),
            ("an alias between items", &aliased, 0),
            ("base after the alias", &base, 5),
            ("a quoted string over an entry", &quoted, 0),
            ("an indented sequence", &indented, 0),
            ("a malformed endpoint", &broken, 5),
            ("two documents", &stream, 0),
            ("base at last", &base, 5),
        ] {
            let afresh = parse_objects(text);
            assert_eq!(parse_objects_cached(text, &mut cache), afresh, "{name}");
            if afresh.is_ok() {
                assert_eq!(cache.items.len(), cached_items, "{name}");
            }
        }
        assert_eq!(parse_objects(&aliased).unwrap().slices.len(), 5);
        assert!(parse_objects(&broken).is_err());
    }

    /// Seeded random edits of a kubectl-shaped list (snippets YAML reads in
    /// odd ways, put anywhere: line breaks other than `\n`, quotes, anchors
    /// and aliases, entry starts, tabs, comments, document markers), each
    /// read with a cache holding the unedited list's items: always what the
    /// edited text reads to afresh, or its error.
    #[test]
    fn random_edits_read_with_the_item_cache_as_read_afresh() {
        const SNIPPETS: [&str; 16] = [
            "\n- ",
            "\r",
            "\r- kind: x\n",
            "\u{85}- a\n",
            "\"",
            "'",
            "&a ",
            "*a",
            "\t",
            "\n# c\n",
            "\n---\n",
            "\nkind: List\n",
            "\nitems:\n",
            "- ",
            "{",
            "\n  - zone: q\n",
        ];
        let base = kubectl_list(3, 3, |i| i % 4 != 1);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..3_000 {
            let mut text = base.clone();
            for _ in 0..1 + next() % 3 {
                let mut at = (next() % (text.len() as u64 + 1)) as usize;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, SNIPPETS[(next() % SNIPPETS.len() as u64) as usize]);
            }
            let mut cache = ItemCache::default();
            parse_objects_cached(&base, &mut cache).unwrap();
            assert_eq!(
                parse_objects_cached(&text, &mut cache),
                parse_objects(&text),
                "case {case}: {text}"
            );
        }
    }
}
