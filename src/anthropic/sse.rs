//! Server-sent events as the Anthropic streaming API writes them: `event: <name>\ndata: <json>\n\n`.
//!
//! Events are serialized straight into the response buffer; nothing builds an intermediate
//! `String` or `serde_json::Value` per delta.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

/// `Content-Type` of a streaming response.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// The keep-alive event, byte-identical to Anthropic's (note the space after the colon).
pub const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Append one event. `data` is any serializable value (a borrowed struct or a `serde_json::Value`).
pub fn write_event<T: Serialize + ?Sized>(out: &mut BytesMut, event: &str, data: &T) {
    let start = out.len();
    out.reserve(event.len() + 64);
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\ndata: ");
    if let Err(err) = serde_json::to_writer((&mut *out).writer(), data) {
        // Only a broken `Serialize` impl gets here; drop the half-written event, keep the stream valid.
        tracing::error!(event, %err, "could not serialize an SSE event");
        out.truncate(start);
        return;
    }
    out.put_slice(b"\n\n");
}

/// Append a `ping` event.
pub fn write_ping(out: &mut BytesMut) {
    out.put_slice(PING.as_bytes());
}

/// Split SSE text into `(event, data)` pairs. For tests and for clients of the proxy (the demo
/// traffic generator); tolerant of `\r\n`, comments and multi-line `data`.
pub fn parse_events(text: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let mut name = String::new();
    let mut data = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !name.is_empty() || !data.is_empty() {
                let name = if name.is_empty() { "message".to_owned() } else { std::mem::take(&mut name) };
                events.push((name, std::mem::take(&mut data)));
            }
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = value.to_owned(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_event_then_data_then_blank_line() {
        let mut out = BytesMut::new();
        write_event(&mut out, "message_stop", &json!({"type": "message_stop"}));
        #[derive(Serialize)]
        struct Delta<'a> {
            r#type: &'a str,
            text: &'a str,
        }
        write_event(&mut out, "x", &Delta { r#type: "text_delta", text: "a\"b\n" });
        assert_eq!(
            &out[..],
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\nevent: x\ndata: {\"type\":\"text_delta\",\"text\":\"a\\\"b\\n\"}\n\n"
        );
    }

    #[test]
    fn ping_is_anthropic_shaped() {
        let mut out = BytesMut::new();
        write_ping(&mut out);
        assert_eq!(
            parse_events(std::str::from_utf8(&out).unwrap()),
            [("ping".into(), r#"{"type": "ping"}"#.into())]
        );
    }

    #[test]
    fn parse_round_trips_and_tolerates_crlf_and_comments() {
        let mut out = BytesMut::new();
        write_event(&mut out, "a", &json!({"n": 1}));
        write_event(&mut out, "b", &json!("two"));
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(parse_events(text), [("a".into(), r#"{"n":1}"#.into()), ("b".into(), r#""two""#.into())]);
        assert_eq!(
            parse_events(": comment\r\nevent: e\r\ndata: x\r\ndata: y\r\n\r\ndata: z\n\n"),
            [("e".into(), "x\ny".into()), ("message".into(), "z".into())]
        );
    }
}
