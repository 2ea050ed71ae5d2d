//! The canonical byte form of a record (see the module docs) and the hashes over it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Canonical bytes of any JSON value: keys sorted at every depth, no whitespace.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out);
    out
}

/// The bytes the MAC covers: the canonical bytes of `record` without `chain.mac`.
pub fn mac_input(record: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value_skipping_mac(record, &mut out);
    out
}

/// Lowercase hex SHA-256 of the canonical bytes including `chain.mac`: the next record's `prev`.
pub fn record_hash(record: &Value) -> String {
    hex(&Sha256::digest(canonical_bytes(record)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn write_value_skipping_mac(record: &Value, out: &mut Vec<u8>) {
    let Value::Object(map) = record else {
        write_value(record, out);
        return;
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        match (key.as_str(), map.get(key)) {
            ("chain", Some(Value::Object(chain))) => {
                let mut chain = chain.clone();
                chain.remove("mac");
                write_value(&Value::Object(chain), out);
            }
            (_, Some(v)) => write_value(v, out),
            (_, None) => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
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
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string writer: quotes, backslash escapes, \u00XX for other control characters.
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            c if u32::from(c) < 0x20 => {
                let code = u32::from(c);
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(code >> 4) as usize]);
                out.push(b"0123456789abcdef"[(code & 0xf) as usize]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}
