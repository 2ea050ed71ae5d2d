//! The canonical bytes of a received record, written the way ingest needs them: into one buffer
//! sized for the record and the AES-GCM tag that will be appended to it in place.
//!
//! The bytes are exactly [`hipaa_core::audit::canonical_bytes`] (keys sorted at every depth, no
//! whitespace, serde_json's string escapes): the record MACs, the chain hashes and `audit verify`
//! all depend on that form, and the tests hold this writer to it, value by value. It is faster
//! only in how it writes: strings are copied in runs between the characters that need escaping
//! rather than one character at a time, and numbers are formatted without a temporary string.

use std::io::Write;

use serde_json::Value;

/// Room for the AES-GCM tag, so that encrypting the buffer in place does not reallocate it.
pub(crate) const TAG_ROOM: usize = 16;

/// The canonical bytes of `value`, in a buffer with [`TAG_ROOM`] bytes of spare capacity.
pub(crate) fn canonical(value: &Value, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint + TAG_ROOM);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Number's Display is what `n.to_string()` writes; into a Vec it cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map iterates in key order unless its `preserve_order` feature is on
            // somewhere in the build; sort only when it is not already sorted.
            if map.keys().zip(map.keys().skip(1)).all(|(a, b)| a <= b) {
                write_members(map.iter(), out);
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_members(entries.into_iter(), out);
            }
            out.push(b'}');
        }
    }
}

fn write_members<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    for (i, (key, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_value(v, out);
    }
}

/// serde_json's string form: quotes, `\"` `\\` `\n` `\r` `\t` `\b` `\f`, `\u00XX` for the other
/// control characters, every other character (DEL and non-ASCII included) as its UTF-8 bytes.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
