//! Size bounds of the audit trail (164.312(b); THREATS.md "amplification"): every field a client
//! controls is capped, so a record is bounded, so a batch of records can always be cut below the
//! collector's body limit — one constant the filter and the collector share.
//!
//! Lengths are measured in bytes **after JSON escaping** (a `"` costs 2 bytes, a control byte 6),
//! as [`crate::audit::canonical`] writes them: a header of 45,000 `"` is 90,000 bytes of record.
//! A value longer than its cap is cut at a character boundary and the record's `truncated`
//! member names the field (`"source.userAgent"`, `"actor.roles"`, ...), so a reader knows the
//! value is a prefix. Lists (roles, amr) keep at most [`MAX_LIST_ITEMS`] items, each capped.

use crate::audit::record::AuditRecord;

/// The largest batch body a filter sends, and the collector's default body limit (its
/// `max_body`): a batch the filter cuts is never refused for its size by a collector left at
/// its default.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A sealed record is never larger than this (the caps below add up to less; a unit test holds a
/// record with every field at its cap below it). A batch always has room for one record.
pub const MAX_RECORD_BYTES: usize = 32 * 1024;

/// `action.path` (with its query string).
pub const MAX_PATH: usize = 4096;
/// `source.userAgent`.
pub const MAX_USER_AGENT: usize = 512;
/// `action.method`.
pub const MAX_METHOD: usize = 32;
/// `requestId`.
pub const MAX_REQUEST_ID: usize = 256;
/// Identifiers: `resource.patient`, `inference.model` / `version` / `responseSha256` /
/// `responseSignatureKeyId`, `actor.subject` / `session`,
/// `egress.host`, `outcome.reason`, `emergency.reason`, `source.tls`, `source.ip`.
pub const MAX_ID: usize = 256;
/// `actor.peer` (a SPIFFE id).
pub const MAX_PEER: usize = 1024;
/// Items kept in `actor.roles` / `actor.amr`.
pub const MAX_LIST_ITEMS: usize = 32;
/// Each item of `actor.roles` / `actor.amr`.
pub const MAX_LIST_ITEM: usize = 128;

/// The bytes `c` takes inside a JSON string as the canonical writer escapes it.
pub fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        '\u{00}'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

/// The bytes `s` takes inside a JSON string (without its quotes).
pub fn escaped_str_len(s: &str) -> usize {
    s.chars().map(escaped_len).sum()
}

/// Cuts `s` to its longest prefix (whole characters) whose escaped length is at most `max`.
/// True when something was cut.
pub fn cap(s: &mut String, max: usize) -> bool {
    // Short values (nearly all) are answered without looking at every character.
    if s.len() <= max && s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        return false;
    }
    let mut used = 0usize;
    let mut kept = String::new();
    for c in s.chars() {
        let n = escaped_len(c);
        if used + n > max {
            *s = kept;
            return true;
        }
        used += n;
        kept.push(c);
    }
    false
}

/// [`cap`] on an optional value.
pub fn cap_opt(s: &mut Option<String>, max: usize) -> bool {
    s.as_mut().is_some_and(|v| cap(v, max))
}

/// Keeps at most [`MAX_LIST_ITEMS`] items, each capped at [`MAX_LIST_ITEM`]. True when
/// something was cut.
pub fn cap_list(list: &mut Option<Vec<String>>) -> bool {
    let Some(items) = list.as_mut() else {
        return false;
    };
    let mut cut = items.len() > MAX_LIST_ITEMS;
    items.truncate(MAX_LIST_ITEMS);
    for item in items.iter_mut() {
        cut |= cap(item, MAX_LIST_ITEM);
    }
    cut
}

/// Caps every string of an unsealed record (all of them come, directly or through a header
/// another filter copied, from the request, the token or the connection) and fills in
/// `truncated` with the names of the fields that were cut, in record order. The result is at
/// most [`MAX_RECORD_BYTES`] once sealed.
pub fn cap_record(record: &mut AuditRecord) {
    let mut cut: Vec<String> = Vec::new();
    let mut note = |was_cut: bool, name: &str| {
        if was_cut {
            cut.push(name.to_string());
        }
    };
    note(cap_opt(&mut record.request_id, MAX_REQUEST_ID), "requestId");
    if let Some(a) = record.actor.as_mut() {
        note(cap_opt(&mut a.subject, MAX_ID), "actor.subject");
        note(cap_list(&mut a.roles), "actor.roles");
        note(cap_opt(&mut a.session, MAX_ID), "actor.session");
        note(cap_list(&mut a.amr), "actor.amr");
        note(cap_opt(&mut a.peer, MAX_PEER), "actor.peer");
    }
    if let Some(a) = record.action.as_mut() {
        note(cap(&mut a.method, MAX_METHOD), "action.method");
        note(cap(&mut a.path, MAX_PATH), "action.path");
        note(cap_opt(&mut a.route, MAX_ID), "action.route");
    }
    if let Some(r) = record.resource.as_mut() {
        note(cap_opt(&mut r.patient, MAX_ID), "resource.patient");
        note(cap_opt(&mut r.resource_type, MAX_ID), "resource.type");
    }
    if let Some(i) = record.inference.as_mut() {
        note(cap_opt(&mut i.model, MAX_ID), "inference.model");
        note(cap_opt(&mut i.version, MAX_ID), "inference.version");
        note(
            cap_opt(&mut i.response_sha256, MAX_ID),
            "inference.responseSha256",
        );
        note(
            cap_opt(&mut i.response_signature_key_id, MAX_ID),
            "inference.responseSignatureKeyId",
        );
    }
    if let Some(e) = record.egress.as_mut() {
        note(cap_opt(&mut e.host, MAX_ID), "egress.host");
        note(cap_opt(&mut e.baa_id, MAX_ID), "egress.baaId");
    }
    if let Some(s) = record.source.as_mut() {
        note(cap_opt(&mut s.ip, MAX_ID), "source.ip");
        note(
            cap_opt(&mut s.user_agent, MAX_USER_AGENT),
            "source.userAgent",
        );
        note(cap_opt(&mut s.tls, MAX_ID), "source.tls");
    }
    if let Some(e) = record.emergency.as_mut() {
        note(cap(&mut e.reason, MAX_ID), "emergency.reason");
    }
    if let Some(o) = record.outcome.as_mut() {
        note(cap_opt(&mut o.reason, MAX_ID), "outcome.reason");
    }
    record.truncated = (!cut.is_empty()).then_some(cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{
        Action, Actor, Decision, Egress, Emergency, Inference, Operation, Outcome, Resource, Source,
    };
    use crate::audit::{ChainWriter, MacKey};

    #[test]
    fn escaped_lengths_follow_the_canonical_writer() {
        assert_eq!(escaped_str_len("ab"), 2);
        assert_eq!(escaped_str_len("\"\\\n"), 6);
        assert_eq!(escaped_str_len("\u{01}"), 6);
        assert_eq!(escaped_str_len("é"), 2);
        assert_eq!(escaped_str_len("😀"), 4);
        for s in ["plain", "\"quoted\"", "ctl\u{01}\u{1f}", "é😀\t"] {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(escaped_str_len(s) + 2, json.len(), "{s:?}");
        }
    }

    #[test]
    fn cap_cuts_at_a_character_boundary_within_the_escaped_budget() {
        let mut s = "\"".repeat(45_000);
        assert!(cap(&mut s, MAX_USER_AGENT));
        assert_eq!(s.len(), MAX_USER_AGENT / 2);
        assert_eq!(escaped_str_len(&s), MAX_USER_AGENT);
        // A multi-byte character that would cross the cap is left out whole.
        let mut s = format!("{}😀", "a".repeat(10));
        assert!(cap(&mut s, 12));
        assert_eq!(s, "a".repeat(10));
        let mut s = "\u{01}\u{01}".to_string();
        assert!(cap(&mut s, 11));
        assert_eq!(s, "\u{01}");
        let mut short = "short".to_string();
        assert!(!cap(&mut short, 5));
        assert_eq!(short, "short");
        let mut none = None;
        assert!(!cap_opt(&mut none, 1));
    }

    #[test]
    fn lists_keep_a_bounded_number_of_bounded_items() {
        let mut l = Some((0..100).map(|i| format!("role-{i}")).collect::<Vec<_>>());
        assert!(cap_list(&mut l));
        assert_eq!(l.as_ref().unwrap().len(), MAX_LIST_ITEMS);
        let mut l = Some(vec!["x".repeat(1000)]);
        assert!(cap_list(&mut l));
        assert_eq!(l.unwrap()[0].len(), MAX_LIST_ITEM);
        let mut l = Some(vec!["clinician".to_string()]);
        assert!(!cap_list(&mut l));
        assert!(!cap_list(&mut None));
    }

    fn huge(c: char) -> String {
        std::iter::repeat_n(c, 100_000).collect()
    }

    /// Every string of the record at 100,000 characters that escape to 6 bytes each, lists of
    /// 1,000 such items: after [`cap_record`], sealed, the record is below [`MAX_RECORD_BYTES`]
    /// and every field is named in `truncated`.
    #[test]
    fn a_record_with_every_field_hostile_is_bounded_once_capped() {
        let h = || Some(huge('\u{1}'));
        let mut r = AuditRecord::access(1_700_000_000_000, h());
        r.actor = Some(Actor {
            subject: h(),
            roles: Some(vec![huge('\u{1}'); 1000]),
            session: h(),
            amr: Some(vec![huge('"'); 1000]),
            peer: h(),
        });
        r.action = Some(Action {
            method: huge('\u{1}'),
            path: huge('\u{1}'),
            route: h(),
            operation: Operation::Read,
        });
        r.resource = Some(Resource {
            patient: h(),
            resource_type: h(),
        });
        r.inference = Some(Inference {
            model: h(),
            version: h(),
            response_sha256: h(),
            response_signature_key_id: h(),
        });
        r.egress = Some(Egress {
            host: h(),
            baa_id: h(),
        });
        r.source = Some(Source {
            ip: h(),
            user_agent: h(),
            tls: h(),
        });
        r.emergency = Some(Emergency {
            reason: huge('\u{1}'),
        });
        r.outcome = Some(Outcome {
            decision: Decision::Deny,
            status: 401,
            reason: h(),
            bytes: u64::MAX,
            duration_ms: u64::MAX,
        });
        cap_record(&mut r);
        let names = r.truncated.clone().unwrap();
        assert_eq!(names.len(), 22, "{names:?}");
        for n in [
            "source.userAgent",
            "action.path",
            "actor.roles",
            "actor.amr",
            "requestId",
            "resource.patient",
            "inference.model",
            "inference.responseSignatureKeyId",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} not flagged: {names:?}");
        }
        let key = MacKey::parse(&format!("k1:{}", "ab".repeat(32))).unwrap();
        let (mut w, _) = ChainWriter::start("c", key, 0).unwrap();
        let sealed = w.seal_to_json(r).unwrap();
        assert!(sealed.len() < MAX_RECORD_BYTES, "{} bytes", sealed.len());
        const { assert!(MAX_RECORD_BYTES < MAX_BATCH_BYTES / 4) };
        let v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(v["truncated"][0], "requestId");
    }

    #[test]
    fn a_record_within_its_caps_is_unchanged_and_unflagged() {
        let mut r = AuditRecord::access(0, Some("rid-1".into()));
        r.source = Some(Source {
            ip: Some("10.0.0.1".into()),
            user_agent: Some("curl/8".into()),
            tls: None,
        });
        let before = r.clone();
        cap_record(&mut r);
        assert_eq!(r, before);
        assert_eq!(r.truncated, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("truncated").is_none(), "absent, not null: {json}");
    }
}
