//! An incremental parser of Server-Sent Events, as `GET /v1/watch` sends them.
//!
//! Bytes go in as they arrive from the network, in chunks cut anywhere (even
//! in the middle of a line or of a `\r\n`); whole events come out. It follows
//! the WHATWG "event stream" interpretation: lines end with `\n`, `\r\n` or
//! `\r`; a blank line dispatches the event; `data:` lines accumulate (joined
//! with `\n`); `event:` names the event; `id:` sets the last event id, which
//! persists across events until changed; `retry:` sets the reconnection
//! delay; lines starting with `:` are comments; an event with no data is not
//! dispatched; an unterminated event at the end of the stream is dropped.

use std::time::Duration;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id at dispatch time (empty when none was ever set):
    /// what to send back as `Last-Event-ID` to resume after this event.
    pub id: String,
    /// The event's type: the `event:` field, or `message` when absent.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet terminated.
    pending: Vec<u8>,
    /// The last byte seen was a `\r`: a `\n` right after it ends nothing.
    after_cr: bool,
    /// Whether the first line has been seen (a UTF-8 BOM may precede it).
    started: bool,
    data: String,
    has_data: bool,
    event: String,
    last_id: String,
    retry: Option<Duration>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of the stream; returns the events it completes, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.pending.extend_from_slice(&rest[..end]);
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    // The chunk ends on `\r`: a `\n` may open the next one.
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.pending);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.pending.extend_from_slice(rest);
        events
    }

    /// The last event id seen so far (empty when none).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// The reconnection delay the server asked for with `retry:`, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Processes one line (without its terminator).
    fn line(&mut self, raw: &[u8]) -> Option<SseEvent> {
        let mut raw = raw;
        if !self.started {
            self.started = true;
            if let Some(stripped) = raw.strip_prefix("\u{feff}".as_bytes()) {
                raw = stripped;
            }
        }
        if raw.is_empty() {
            return self.dispatch();
        }
        if raw[0] == b':' {
            return None; // A comment, e.g. a keep-alive.
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => self.last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {} // Unknown fields are ignored, as the spec says.
        }
        None
    }

    /// A blank line: hands the event out if it has data, and starts afresh.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            id: self.last_id.clone(),
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        chunks.iter().flat_map(|c| parser.push(c)).collect()
    }

    fn event(id: &str, kind: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.into(),
            event: kind.into(),
            data: data.into(),
        }
    }

    #[test]
    fn fields_make_an_event_at_the_blank_line() {
        let events = parse_all(&[b"id: 7-0\nevent: epoch\ndata: {\"epoch\":7}\n\n"]);
        assert_eq!(events, vec![event("7-0", "epoch", "{\"epoch\":7}")]);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let events = parse_all(&[b"data: first\ndata:second\ndata:  third\n\n"]);
        assert_eq!(events, vec![event("", "message", "first\nsecond\n third")]);
    }

    #[test]
    fn comments_are_ignored() {
        let events = parse_all(&[b": keep-alive\n\n:another\ndata: x\n: mid\n\n"]);
        assert_eq!(events, vec![event("", "message", "x")]);
    }

    #[test]
    fn id_persists_across_events_until_changed() {
        let events = parse_all(&[b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"]);
        assert_eq!(
            events,
            vec![
                event("1", "message", "a"),
                event("1", "message", "b"),
                event("2", "message", "c")
            ]
        );
    }

    #[test]
    fn event_type_resets_after_dispatch() {
        let events = parse_all(&[b"event: plan\ndata: a\n\ndata: b\n\n"]);
        assert_eq!(events[0].event, "plan");
        assert_eq!(events[1].event, "message");
    }

    #[test]
    fn chunks_split_mid_line_and_mid_field_name() {
        let whole = b"id: 42\nevent: epoch\ndata: {\"a\":\ndata: 1}\n\n";
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            let events = parse_all(&[a, b]);
            assert_eq!(
                events,
                vec![event("42", "epoch", "{\"a\":\n1}")],
                "cut at {cut}"
            );
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(parse_all(&bytes), vec![event("42", "epoch", "{\"a\":\n1}")]);
    }

    #[test]
    fn crlf_and_cr_line_endings_even_split_between_chunks() {
        let whole = b"id: 3\r\ndata: x\r\n\r\ndata: y\r\rdata: z\n\n";
        let expected = vec![
            event("3", "message", "x"),
            event("3", "message", "y"),
            event("3", "message", "z"),
        ];
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(parse_all(&[a, b]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(parse_all(&[b"id: 9\nevent: epoch\n\n"]).is_empty());
        let mut parser = SseParser::new();
        parser.push(b"id: 9\n\n");
        assert_eq!(parser.last_event_id(), "9");
    }

    #[test]
    fn unterminated_event_at_the_end_is_not_dispatched() {
        assert!(parse_all(&[b"data: half"]).is_empty());
        assert!(parse_all(&[b"data: half\n"]).is_empty());
    }

    #[test]
    fn retry_field_sets_the_reconnection_delay() {
        let mut parser = SseParser::new();
        parser.push(b"retry: 1500\nretry: soon\n\n");
        assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn field_without_colon_and_bom_are_handled() {
        let events = parse_all(&["\u{feff}data: a\ndata\n\n".as_bytes()]);
        assert_eq!(events, vec![event("", "message", "a\n")]);
    }
}
