//! AWS event-stream framing as Kiro / CodeWhisperer uses it (binary, length-prefixed, CRC-checked).
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
}
