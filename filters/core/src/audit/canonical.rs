//! The canonical byte form of a record (see the module docs) and the hashes over it.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;

use super::record::{AuditRecord, Decision, Operation};

/// Canonical bytes of any JSON value: keys sorted at every depth, no whitespace.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out);
    out
}

/// [`canonical_bytes`] appended to `out` (the collector writes them into a buffer it encrypts
/// in place).
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    write_value(value, out);
}

/// The bytes the MAC covers: the canonical bytes of `record` without `chain.mac`.
pub fn mac_input(record: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value_skipping_mac(record, &mut out);
    out
}

/// Lowercase hex SHA-256 of the canonical bytes including `chain.mac`: the next record's `prev`.
pub fn record_hash(record: &Value) -> String {
    hex::encode(Sha256::digest(canonical_bytes(record)))
}

/// The canonical bytes of a typed record without `chain.mac` (the MAC input), written straight
/// from the struct (keys in sorted order by hand; no `serde_json::Value` tree, no sorting at run
/// time), and the offset at which `"mac":"<hex>",` goes to make the canonical bytes with it.
///
/// The same bytes as `mac_input(&serde_json::to_value(record))` — the tests hold the two equal,
/// for every field filled and empty and for strings that need escapes — so the verifier, which
/// works from the JSON value, agrees with the writer. The record's fields must stay as listed
/// here: a field added to a record type without a line here makes those tests fail.
pub(crate) fn write_record_without_mac(record: &AuditRecord, out: &mut Vec<u8>) -> usize {
    // Top level, sorted: action, actor, chain, egress, emergency, inference, kind, outcome,
    // requestId, resource, source, time, (truncated,) v.
    out.extend_from_slice(b"{\"action\":");
    match &record.action {
        None => out.extend_from_slice(b"null"),
        Some(a) => {
            out.extend_from_slice(b"{\"method\":");
            write_string(&a.method, out);
            out.extend_from_slice(b",\"operation\":");
            write_string(operation_str(a.operation), out);
            out.extend_from_slice(b",\"path\":");
            write_string(&a.path, out);
            out.extend_from_slice(b",\"route\":");
            write_opt_string(a.route.as_deref(), out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"actor\":");
    match &record.actor {
        None => out.extend_from_slice(b"null"),
        Some(a) => {
            out.extend_from_slice(b"{\"amr\":");
            write_opt_list(a.amr.as_deref(), out);
            out.extend_from_slice(b",\"peer\":");
            write_opt_string(a.peer.as_deref(), out);
            out.extend_from_slice(b",\"roles\":");
            write_opt_list(a.roles.as_deref(), out);
            out.extend_from_slice(b",\"session\":");
            write_opt_string(a.session.as_deref(), out);
            out.extend_from_slice(b",\"subject\":");
            write_opt_string(a.subject.as_deref(), out);
            out.push(b'}');
        }
    }
    // chain, sorted: id, keyId, (mac,) prev, seq.
    let c = &record.chain;
    out.extend_from_slice(b",\"chain\":{\"id\":");
    write_string(&c.id, out);
    out.extend_from_slice(b",\"keyId\":");
    write_string(&c.key_id, out);
    out.push(b',');
    let mac_at = out.len();
    out.extend_from_slice(b"\"prev\":");
    write_string(&c.prev, out);
    out.extend_from_slice(b",\"seq\":");
    write_u64(c.seq, out);
    out.push(b'}');
    out.extend_from_slice(b",\"egress\":");
    match &record.egress {
        None => out.extend_from_slice(b"null"),
        Some(e) => {
            out.extend_from_slice(b"{\"baaId\":");
            write_opt_string(e.baa_id.as_deref(), out);
            out.extend_from_slice(b",\"host\":");
            write_opt_string(e.host.as_deref(), out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"emergency\":");
    match &record.emergency {
        None => out.extend_from_slice(b"null"),
        Some(e) => {
            out.extend_from_slice(b"{\"reason\":");
            write_string(&e.reason, out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"inference\":");
    match &record.inference {
        None => out.extend_from_slice(b"null"),
        Some(i) => {
            // Sorted: model, (responseSha256,) (responseSignatureKeyId,) version.
            out.extend_from_slice(b"{\"model\":");
            write_opt_string(i.model.as_deref(), out);
            if let Some(sha) = &i.response_sha256 {
                out.extend_from_slice(b",\"responseSha256\":");
                write_string(sha, out);
            }
            if let Some(key_id) = &i.response_signature_key_id {
                out.extend_from_slice(b",\"responseSignatureKeyId\":");
                write_string(key_id, out);
            }
            out.extend_from_slice(b",\"version\":");
            write_opt_string(i.version.as_deref(), out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"kind\":");
    write_string(record.kind.as_str(), out);
    out.extend_from_slice(b",\"outcome\":");
    match &record.outcome {
        None => out.extend_from_slice(b"null"),
        Some(o) => {
            out.extend_from_slice(b"{\"bytes\":");
            write_u64(o.bytes, out);
            out.extend_from_slice(b",\"decision\":");
            write_string(
                match o.decision {
                    Decision::Allow => "allow",
                    Decision::Deny => "deny",
                },
                out,
            );
            out.extend_from_slice(b",\"durationMs\":");
            write_u64(o.duration_ms, out);
            out.extend_from_slice(b",\"reason\":");
            write_opt_string(o.reason.as_deref(), out);
            out.extend_from_slice(b",\"status\":");
            write_u64(u64::from(o.status), out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"requestId\":");
    write_opt_string(record.request_id.as_deref(), out);
    out.extend_from_slice(b",\"resource\":");
    match &record.resource {
        None => out.extend_from_slice(b"null"),
        Some(r) => {
            out.extend_from_slice(b"{\"patient\":");
            write_opt_string(r.patient.as_deref(), out);
            out.extend_from_slice(b",\"type\":");
            write_opt_string(r.resource_type.as_deref(), out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"source\":");
    match &record.source {
        None => out.extend_from_slice(b"null"),
        Some(s) => {
            out.extend_from_slice(b"{\"ip\":");
            write_opt_string(s.ip.as_deref(), out);
            out.extend_from_slice(b",\"tls\":");
            write_opt_string(s.tls.as_deref(), out);
            out.extend_from_slice(b",\"userAgent\":");
            write_opt_string(s.user_agent.as_deref(), out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"time\":");
    write_string(&record.time, out);
    // Only when present (see `AuditRecord::truncated`); "truncated" sorts between "time" and "v".
    if let Some(fields) = &record.truncated {
        out.extend_from_slice(b",\"truncated\":");
        write_opt_list(Some(fields), out);
    }
    out.extend_from_slice(b",\"v\":");
    write_u64(u64::from(record.v), out);
    out.push(b'}');
    mac_at
}

/// The `"mac":"<hex>",` member [`write_record_without_mac`] left room for, put in at `at`: the
/// record's canonical bytes including its MAC (also its JSON as sent).
pub(crate) fn insert_mac(bytes: &mut Vec<u8>, at: usize, mac_hex: &str) {
    let mut member = Vec::with_capacity(mac_hex.len() + 9);
    member.extend_from_slice(b"\"mac\":");
    write_string(mac_hex, &mut member);
    member.push(b',');
    bytes.splice(at..at, member);
}

fn operation_str(op: Operation) -> &'static str {
    match op {
        Operation::Read => "read",
        Operation::Write => "write",
        Operation::Delete => "delete",
        Operation::Export => "export",
        Operation::Inference => "inference",
    }
}

fn write_opt_string(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        Some(s) => write_string(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_opt_list(items: Option<&[String]>, out: &mut Vec<u8>) {
    let Some(items) = items else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(item, out);
    }
    out.push(b']');
}

fn write_u64(n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
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

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string writer: quotes, backslash escapes, \u00XX for other control characters.
    // Byte by byte: every byte of a multi-byte UTF-8 sequence is >= 0x80 and copied as it is;
    // runs that need no escape are copied whole.
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
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
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            // Two lower-case digits, as serde_json writes them; one byte always fits two.
            let mut digits = [b'0'; 2];
            let _ = hex::encode_to_slice([b], &mut digits);
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&digits);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}
