//! AWS event-stream framing as Kiro / CodeWhisperer uses it (binary, length-prefixed, CRC-checked):
//! bytes ↔ [`Frame`]s. What a frame means is [`super::event`].
//!
//! Layout of one message (all integers big-endian):
//!
//! ```text
//! u32 total_length | u32 headers_length | u32 prelude_crc = CRC32(bytes 0..8)
//! headers (headers_length bytes) | payload | u32 message_crc = CRC32(bytes 0..total_length-4)
//! ```
//!
//! Kiro only sends string headers (type 7), always three of them, in the order `:event-type`
//! (or `:exception-type`), `:content-type`, `:message-type`. The encoder keeps the caller's
//! order because fragile clients depend on `:message-type` being last.

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Size of the trailing message CRC.
const TRAILER_LEN: usize = 4;
/// Header value type tag for a UTF-8 string (u16 length + bytes).
const HEADER_TYPE_STRING: u8 = 7;

/// Encode one event-stream message with string headers in the given order.
///
/// Header names longer than 255 bytes or values longer than 65 535 bytes cannot be represented;
/// they are truncated to the limit (this encoder only ever sees short, fixed header names).
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| {
            1 + name.len().min(u8::MAX as usize) + 1 + 2 + value.len().min(u16::MAX as usize)
        })
        .sum();
    let total = PRELUDE_LEN + headers_len + payload.len() + TRAILER_LEN;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_u32(total as u32);
    buf.put_u32(headers_len as u32);
    let prelude_crc = crc32fast::hash(&buf[..8]);
    buf.put_u32(prelude_crc);
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(u8::MAX as usize)];
        let value = &value.as_bytes()[..value.len().min(u16::MAX as usize)];
        buf.put_u8(name.len() as u8);
        buf.put_slice(name);
        buf.put_u8(HEADER_TYPE_STRING);
        buf.put_u16(value.len() as u16);
        buf.put_slice(value);
    }
    buf.put_slice(payload);
    let message_crc = crc32fast::hash(&buf);
    buf.put_u32(message_crc);
    buf.freeze()
}

/// A Kiro event frame: headers `:event-type`=event_type, `:content-type`=`application/json`,
/// `:message-type`=`event`, in that order.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Bytes {
    encode_frame(
        &[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        payload,
    )
}

/// An exception frame: `:exception-type`, `:content-type`, `:message-type`=`exception`.
pub fn encode_exception(exception_type: &str, payload: &[u8]) -> Bytes {
    encode_frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

/// Smallest valid message: prelude + message CRC, no headers, no payload.
pub const MIN_FRAME_LEN: usize = PRELUDE_LEN + TRAILER_LEN;
/// Largest message the decoder accepts. A length above this is corruption, not a big answer:
/// Kiro frames carry one small JSON delta each.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// A header value. Kiro only sends strings; the other types are decoded so that a frame carrying
/// them is still readable, not rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    ByteArray(Bytes),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One decoded event-stream message: its headers in wire order and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, HeaderValue)>,
    /// A slice of the received buffer (no copy).
    pub payload: Bytes,
}

impl Frame {
    /// The first string header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_str())
    }

    /// `:message-type`: `event`, `exception` or `error`.
    pub fn message_type(&self) -> Option<&str> {
        self.header(":message-type")
    }

    /// `:event-type`, e.g. `assistantResponseEvent`.
    pub fn event_type(&self) -> Option<&str> {
        self.header(":event-type")
    }

    /// `:exception-type`, e.g. `ContentLengthExceededException`.
    pub fn exception_type(&self) -> Option<&str> {
        self.header(":exception-type")
    }
}

/// Why the byte stream could not be decoded. Any of these means the stream is corrupt: the
/// decoder does not try to resynchronise, the caller ends the response with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream prelude CRC mismatch (expected {expected:#010x}, computed {computed:#010x})")]
    PreludeCrc { expected: u32, computed: u32 },
    #[error("event-stream message CRC mismatch (expected {expected:#010x}, computed {computed:#010x})")]
    MessageCrc { expected: u32, computed: u32 },
    #[error("event-stream frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge { len: usize },
    #[error("event-stream frame length {len} is below the {MIN_FRAME_LEN}-byte minimum")]
    TooSmall { len: usize },
    #[error("event-stream headers length {headers_len} does not fit in a {total_len}-byte frame")]
    HeadersLength { headers_len: usize, total_len: usize },
    #[error("malformed event-stream header: {0}")]
    Header(&'static str),
}

/// Incremental event-stream decoder: feed it bytes as they arrive, take whole frames out.
///
/// Frames arrive split arbitrarily across reads; the decoder keeps the partial tail and hands out
/// payloads as zero-copy slices of its buffer.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// Set after the first error: every later call returns it again.
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Bytes received but not yet returned as a frame. Non-zero at the end of the upstream body
    /// means the stream was cut mid-frame.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame; `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.try_next() {
            Ok(frame) => Ok(frame),
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf = BytesMut::new();
                Err(err)
            }
        }
    }

    fn try_next(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < PRELUDE_LEN {
            return Ok(None);
        }
        let total_len = be_u32(&self.buf[0..4]) as usize;
        let headers_len = be_u32(&self.buf[4..8]) as usize;
        let expected = be_u32(&self.buf[8..12]);
        let computed = crc32fast::hash(&self.buf[..8]);
        if expected != computed {
            return Err(FrameError::PreludeCrc { expected, computed });
        }
        if total_len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len: total_len });
        }
        if total_len < MIN_FRAME_LEN {
            return Err(FrameError::TooSmall { len: total_len });
        }
        if headers_len > total_len - MIN_FRAME_LEN {
            return Err(FrameError::HeadersLength { headers_len, total_len });
        }
        if self.buf.len() < total_len {
            // Make room for the rest of this frame once, instead of growing per read.
            self.buf.reserve(total_len - self.buf.len());
            return Ok(None);
        }
        let raw = self.buf.split_to(total_len).freeze();
        let body_end = total_len - TRAILER_LEN;
        let expected = be_u32(&raw[body_end..]);
        let computed = crc32fast::hash(&raw[..body_end]);
        if expected != computed {
            return Err(FrameError::MessageCrc { expected, computed });
        }
        let headers_end = PRELUDE_LEN + headers_len;
        let headers = parse_headers(&raw[PRELUDE_LEN..headers_end])?;
        Ok(Some(Frame { headers, payload: raw.slice(headers_end..body_end) }))
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Splits `n` bytes off the front of `input`, or fails with `what`.
fn take<'a>(input: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
    if input.len() < n {
        return Err(FrameError::Header(what));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn take_array<const N: usize>(input: &mut &[u8], what: &'static str) -> Result<[u8; N], FrameError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(input, N, what)?);
    Ok(out)
}

fn parse_headers(mut input: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let mut headers = Vec::with_capacity(3);
    while !input.is_empty() {
        let name_len = take(&mut input, 1, "truncated name length")?[0] as usize;
        let name = std::str::from_utf8(take(&mut input, name_len, "truncated name")?)
            .map_err(|_| FrameError::Header("name is not UTF-8"))?
            .to_owned();
        let value_type = take(&mut input, 1, "missing value type")?[0];
        let value = match value_type {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(take_array(&mut input, "truncated byte")?)),
            3 => HeaderValue::Int16(i16::from_be_bytes(take_array(&mut input, "truncated int16")?)),
            4 => HeaderValue::Int32(i32::from_be_bytes(take_array(&mut input, "truncated int32")?)),
            5 => HeaderValue::Int64(i64::from_be_bytes(take_array(&mut input, "truncated int64")?)),
            6 | 7 => {
                let len = u16::from_be_bytes(take_array(&mut input, "truncated value length")?) as usize;
                let bytes = take(&mut input, len, "truncated value")?;
                if value_type == 6 {
                    HeaderValue::ByteArray(Bytes::copy_from_slice(bytes))
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(bytes)
                            .map_err(|_| FrameError::Header("string value is not UTF-8"))?
                            .to_owned(),
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(take_array(&mut input, "truncated timestamp")?)),
            9 => HeaderValue::Uuid(take_array(&mut input, "truncated uuid")?),
            _ => return Err(FrameError::Header("unknown value type")),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn be32(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    /// First frame of a real Kiro capture (protocol notes §5.3).
    pub(crate) const CAPTURED_FRAME_HEX: &str = concat!(
        "000000820000005cccd921440b3a6576656e742d74797065070016617373697374616e74526573706f6e7365",
        "4576656e740d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d657373",
        "6167652d747970650700056576656e747b22636f6e74656e74223a2248656c6c6f212049227dbd0b8539",
    );

    #[test]
    fn encoder_reproduces_captured_frame_byte_for_byte() {
        let frame = encode_event("assistantResponseEvent", br#"{"content":"Hello! I"}"#);
        assert_eq!(hex(&frame), CAPTURED_FRAME_HEX);
        assert_eq!(frame.len(), 130);
        assert_eq!(be32(&frame, 4), 92);
        assert_eq!(be32(&frame, 8), 0xccd9_2144);
        assert_eq!(be32(&frame, 126), 0xbd0b_8539);
    }

    #[test]
    fn encoder_matches_synthetic_tool_use_vector() {
        let payload =
            br#"{"name":"get_weather","toolUseId":"tooluse_abc","input":"{\"city\":","stop":false}"#;
        let frame = encode_event("toolUseEvent", payload);
        assert_eq!(frame.len(), 180);
        assert_eq!(be32(&frame, 0), 0xb4);
        assert_eq!(be32(&frame, 4), 0x52);
        assert_eq!(be32(&frame, 8), 0x0500_4165);
        assert_eq!(be32(&frame, 176), 0x1b51_0d60);
    }

    #[test]
    fn encoder_matches_synthetic_exception_vector() {
        let frame =
            encode_exception("ContentLengthExceededException", br#"{"message":"Response exceeded length"}"#);
        assert_eq!(frame.len(), 162);
        assert_eq!(hex(&frame[..12]), "000000a20000006c2bc13eec");
        assert_eq!(be32(&frame, 158), 0x1692_cb18);
        // `:message-type` stays last: the headers end with the value `exception`.
        let headers_end = 12 + be32(&frame, 4) as usize;
        assert_eq!(&frame[headers_end - 9..headers_end], b"exception");
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn decode_all(dec: &mut FrameDecoder) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = dec.next_frame().expect("valid frames") {
            frames.push(f);
        }
        frames
    }

    #[test]
    fn decodes_captured_frame() {
        let mut dec = FrameDecoder::new();
        dec.feed(&unhex(CAPTURED_FRAME_HEX));
        let frame = dec.next_frame().unwrap().expect("one frame");
        assert_eq!(frame.event_type(), Some("assistantResponseEvent"));
        assert_eq!(frame.message_type(), Some("event"));
        assert_eq!(frame.header(":content-type"), Some("application/json"));
        assert_eq!(frame.exception_type(), None);
        let names: Vec<&str> = frame.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":event-type", ":content-type", ":message-type"]);
        assert_eq!(&frame.payload[..], br#"{"content":"Hello! I"}"#);
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered_len(), 0);
    }

    #[test]
    fn decodes_a_frame_fed_byte_by_byte() {
        let bytes = encode_exception("ContentLengthExceededException", br#"{"message":"too long"}"#);
        let mut dec = FrameDecoder::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(dec.next_frame().unwrap(), None, "frame complete too early at byte {i}");
            dec.feed(std::slice::from_ref(b));
        }
        let frame = dec.next_frame().unwrap().expect("frame after the last byte");
        assert_eq!(frame.message_type(), Some("exception"));
        assert_eq!(frame.exception_type(), Some("ContentLengthExceededException"));
        assert_eq!(&frame.payload[..], br#"{"message":"too long"}"#);
    }

    #[test]
    fn decodes_many_frames_from_one_chunk() {
        let mut all = Vec::new();
        for i in 0..50 {
            all.extend_from_slice(&encode_event(
                "assistantResponseEvent",
                format!("{{\"content\":\"{i}\"}}").as_bytes(),
            ));
        }
        // Plus the first half of one more frame.
        let extra = encode_event("meteringEvent", br#"{"usage":0.1}"#);
        all.extend_from_slice(&extra[..20]);
        let mut dec = FrameDecoder::new();
        dec.feed(&all);
        let frames = decode_all(&mut dec);
        assert_eq!(frames.len(), 50);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.payload, format!("{{\"content\":\"{i}\"}}").as_bytes());
        }
        assert_eq!(dec.buffered_len(), 20);
        dec.feed(&extra[20..]);
        assert_eq!(
            dec.next_frame().unwrap().and_then(|f| f.event_type().map(str::to_owned)).as_deref(),
            Some("meteringEvent")
        );
    }

    #[test]
    fn decodes_non_string_headers_and_empty_payload() {
        let mut raw = BytesMut::new();
        let mut headers = BytesMut::new();
        headers.put_u8(2);
        headers.put_slice(b"ok");
        headers.put_u8(0);
        headers.put_u8(1);
        headers.put_slice(b"n");
        headers.put_u8(4);
        headers.put_i32(-7);
        headers.put_u8(1);
        headers.put_slice(b"t");
        headers.put_u8(8);
        headers.put_i64(1_700_000_000_000);
        let total = PRELUDE_LEN + headers.len() + TRAILER_LEN;
        raw.put_u32(total as u32);
        raw.put_u32(headers.len() as u32);
        let crc = crc32fast::hash(&raw);
        raw.put_u32(crc);
        raw.put_slice(&headers);
        let crc = crc32fast::hash(&raw);
        raw.put_u32(crc);
        let mut dec = FrameDecoder::new();
        dec.feed(&raw);
        let frame = dec.next_frame().unwrap().expect("frame");
        assert_eq!(
            frame.headers,
            vec![
                ("ok".to_owned(), HeaderValue::Bool(true)),
                ("n".to_owned(), HeaderValue::Int32(-7)),
                ("t".to_owned(), HeaderValue::Timestamp(1_700_000_000_000)),
            ]
        );
        assert_eq!(frame.header("n"), None, "non-string headers are not returned as strings");
        assert!(frame.payload.is_empty());
    }

    #[test]
    fn corrupt_prelude_crc_is_an_error_and_sticks() {
        let mut bytes = encode_event("assistantResponseEvent", br#"{"content":"x"}"#).to_vec();
        bytes[8] ^= 0xff;
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes);
        let err = dec.next_frame().unwrap_err();
        assert!(matches!(err, FrameError::PreludeCrc { .. }), "{err:?}");
        dec.feed(&encode_event("assistantResponseEvent", br#"{"content":"y"}"#));
        assert_eq!(dec.next_frame().unwrap_err(), err, "no resync after corruption");
    }

    #[test]
    fn corrupt_message_crc_is_an_error() {
        let mut bytes = encode_event("assistantResponseEvent", br#"{"content":"x"}"#).to_vec();
        let payload_byte = bytes.len() - 6;
        bytes[payload_byte] ^= 0x01;
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes);
        assert!(matches!(dec.next_frame(), Err(FrameError::MessageCrc { .. })));
    }

    #[test]
    fn oversize_and_undersize_lengths_are_errors() {
        for (len, want_large) in [(MAX_FRAME_LEN as u32 + 1, true), (u32::MAX, true), (15, false)] {
            let mut raw = BytesMut::new();
            raw.put_u32(len);
            raw.put_u32(0);
            let crc = crc32fast::hash(&raw);
            raw.put_u32(crc);
            let mut dec = FrameDecoder::new();
            dec.feed(&raw);
            let err = dec.next_frame().unwrap_err();
            if want_large {
                assert_eq!(err, FrameError::TooLarge { len: len as usize });
            } else {
                assert_eq!(err, FrameError::TooSmall { len: 15 });
            }
        }
    }

    #[test]
    fn headers_length_beyond_frame_is_an_error() {
        let mut raw = BytesMut::new();
        raw.put_u32(20);
        raw.put_u32(5);
        let crc = crc32fast::hash(&raw);
        raw.put_u32(crc);
        let mut dec = FrameDecoder::new();
        dec.feed(&raw);
        assert_eq!(
            dec.next_frame().unwrap_err(),
            FrameError::HeadersLength { headers_len: 5, total_len: 20 }
        );
    }

    #[test]
    fn malformed_header_is_an_error_not_a_panic() {
        // A string header whose declared length runs past the header block.
        let mut headers = BytesMut::new();
        headers.put_u8(1);
        headers.put_slice(b"a");
        headers.put_u8(7);
        headers.put_u16(100);
        headers.put_slice(b"short");
        let mut raw = BytesMut::new();
        raw.put_u32((PRELUDE_LEN + headers.len() + TRAILER_LEN) as u32);
        raw.put_u32(headers.len() as u32);
        let crc = crc32fast::hash(&raw);
        raw.put_u32(crc);
        raw.put_slice(&headers);
        let crc = crc32fast::hash(&raw);
        raw.put_u32(crc);
        let mut dec = FrameDecoder::new();
        dec.feed(&raw);
        assert_eq!(dec.next_frame().unwrap_err(), FrameError::Header("truncated value"));
    }

    #[test]
    fn truncated_input_stays_none() {
        let bytes = encode_event("assistantResponseEvent", br#"{"content":"Hello"}"#);
        for cut in [0, 5, 11, 12, 40, bytes.len() - 1] {
            let mut dec = FrameDecoder::new();
            dec.feed(&bytes[..cut]);
            assert_eq!(dec.next_frame().unwrap(), None, "cut at {cut}");
            assert_eq!(dec.next_frame().unwrap(), None, "still none at {cut}");
            assert_eq!(dec.buffered_len(), cut);
        }
    }
}
