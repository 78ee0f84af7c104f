//! Server-sent events, read incrementally from untrusted bytes: the framing both chat APIs stream
//! in (`event:` and `data:` lines, a blank line ends an event).
//!
//! Written here rather than taken from a crate: the two SSE crates on reqwest bring their own
//! retry and reconnect logic (wrong for a model call, which must not be silently re-sent) and no
//! bound on a line's length. This one follows the WHATWG rules that matter for the APIs
//! (`\n`, `\r\n` and `\r` line ends, `:` comments, multi-line `data`, one optional space after
//! the colon, `id` and `retry` ignored) and refuses a line longer than [`MAX_SSE_LINE`] or an
//! event's data larger than [`MAX_SSE_EVENT`]. Whatever the bytes and however they are split
//! into chunks, it returns the same events or an error, and never panics (property-tested). An
//! event not closed by a blank line when the stream ends is dropped, as the standard says.

/// The longest line accepted (1 MiB).
pub const MAX_SSE_LINE: usize = 1 << 20;
/// The largest data of one event (4 MiB).
pub const MAX_SSE_EVENT: usize = 4 << 20;

/// One event: its type (`event:`; empty when not given) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field (empty: `message`).
    pub event: String,
    /// The data.
    pub data: String,
}

/// An incremental parser: feed it chunks, take the events they complete.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one is part of that line end.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a chunk; the events it completes are pushed to `out`. `Err` says what limit the
    /// stream broke (the parser is then of no further use).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(at) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            if self.line.len() + at > MAX_SSE_LINE {
                return Err(format!("a server-sent line longer than {MAX_SSE_LINE} bytes"));
            }
            self.line.extend_from_slice(&rest[..at]);
            let cr = rest[at] == b'\r';
            rest = &rest[at + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out)?;
            self.line = line;
            self.line.clear();
        }
        if self.line.len() + rest.len() > MAX_SSE_LINE {
            return Err(format!("a server-sent line longer than {MAX_SSE_LINE} bytes"));
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_SSE_EVENT {
                    return Err(format!("a server-sent event larger than {MAX_SSE_EVENT} bytes"));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, String> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            parser.feed(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn events_data_lines_comments_and_line_ends() {
        let text = b": hello\r\nevent: delta\r\ndata: {\"a\":1}\r\n\r\ndata:x\ndata: y\n\nid: 3\nretry: 9\n\ndata: last\r\r";
        let events = parse(&[text]).unwrap();
        assert_eq!(
            events,
            vec![
                SseEvent { event: "delta".into(), data: "{\"a\":1}".into() },
                SseEvent { event: String::new(), data: "x\ny".into() },
                SseEvent { event: String::new(), data: "last".into() },
            ]
        );
        // An unfinished event at the end is not an event.
        assert!(parse(&[b"data: half"]).unwrap().is_empty());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let chunk = vec![b'a'; 64 << 10];
        let mut result = Ok(());
        for _ in 0..=(MAX_SSE_LINE / chunk.len()) {
            result = parser.feed(&chunk, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(result.unwrap_err().contains("longer than"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// However a stream is cut into chunks, the events are the same; any bytes parse
        /// without panicking.
        #[test]
        fn chunking_does_not_change_the_events(
            body in prop_oneof![
                any::<Vec<u8>>(),
                "((event: [a-z_]{0,8}|data: ?[a-z{}\":,]{0,12}|: [a-z]{0,4}|id: 1)?(\n|\r\n|\r)){0,24}".prop_map(String::into_bytes),
            ],
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let whole = parse(&[&body]);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for cut in at {
                chunks.push(&body[start..cut]);
                start = cut;
            }
            chunks.push(&body[start..]);
            prop_assert_eq!(whole, parse(&chunks));
        }
    }
}
