//! How a pushing agent names itself to the collector: the `job` and
//! `instance` it stamps on its own series, repeated in two request headers
//! so the collector can tell the pusher apart from the scrape targets whose
//! series it relays (those keep their own `job`/`instance`).
//!
//! Header values are ASCII; anything else in a label value (and `%`) is
//! percent-encoded by [`encode_header_value`] and restored by
//! [`decode_header_value`].

/// Header carrying the pushing agent's `job` label.
pub const JOB_HEADER: &str = "X-Vigil-Agent-Job";
/// Header carrying the pushing agent's `instance` label.
pub const INSTANCE_HEADER: &str = "X-Vigil-Agent-Instance";

/// Encodes a label value for an HTTP header: visible ASCII and spaces pass,
/// every other byte and `%` become `%XX`.
pub fn encode_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b == b' ' || b.is_ascii_graphic()) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_header_value`]; `None` for a malformed escape or bytes
/// that are not UTF-8.
pub fn decode_header_value(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_label_value() {
        for v in ["web-1", "10.0.0.1:9801", "hôte 1", "100%", ""] {
            let enc = encode_header_value(v);
            assert!(enc.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
            assert_eq!(decode_header_value(&enc).as_deref(), Some(v));
        }
        assert_eq!(decode_header_value("%G1"), None);
        assert_eq!(decode_header_value("%4"), None);
    }
}
