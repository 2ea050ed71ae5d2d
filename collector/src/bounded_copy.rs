//! What the trail keeps of a record it could not trust (malformed, bad MAC, unknown key): its
//! length, the SHA-256 of its canonical bytes and a bounded excerpt — never the record whole.
//!
//! Anyone who reaches the ingest port can send such records; keeping them whole let a sender
//! fill the store with its own bytes (and with PHI it made up, encrypted at rest and returned by
//! queries as if it were evidence). The hash still proves which bytes were refused (it is the
//! row's `source_hash`, the dedup key, and what `audit verify` compares), the excerpt lets a
//! reviewer see what it was.

use serde_json::{json, Value};

/// The member of `integrity.record` that holds a bounded copy instead of the record.
pub const MEMBER: &str = "received";

/// The excerpt's bound in bytes (the filters' stand-in uses the same).
pub const EXCERPT_BYTES: usize = hipaa_core::audit::delivery::STAND_IN_EXCERPT;

/// The longest request id or chain id taken from an untrusted record as a hint for the row.
pub const MAX_HINT_CHARS: usize = 128;

/// `{"received": {"bytes": N, "sha256": HEX, "excerpt": TEXT}}` for a record whose canonical
/// bytes are `canonical` and whose hash is `sha256`.
pub fn bounded_copy(canonical: &[u8], sha256: &str) -> Value {
    let mut end = canonical.len().min(EXCERPT_BYTES);
    // Cut on a character boundary (canonical bytes are UTF-8 JSON).
    while end > 0 && std::str::from_utf8(canonical.get(..end).unwrap_or_default()).is_err() {
        end -= 1;
    }
    let excerpt = String::from_utf8_lossy(canonical.get(..end).unwrap_or_default());
    json!({ MEMBER: {"bytes": canonical.len(), "sha256": sha256, "excerpt": excerpt} })
}

/// The hash a bounded copy names, when `record` is one.
pub fn hash_of(record: &Value) -> Option<&str> {
    let obj = record.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get(MEMBER)?.get("sha256")?.as_str()
}

/// A hint read from an untrusted record, kept only when it is short.
pub fn hint(text: Option<&str>) -> Option<String> {
    text.filter(|t| t.chars().count() <= MAX_HINT_CHARS)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_record_is_kept_as_its_hash_length_and_a_bounded_excerpt() {
        let big = format!("{{\"x\":\"{}é\"}}", "a".repeat(EXCERPT_BYTES - 7));
        let copy = bounded_copy(big.as_bytes(), "abc");
        let r = &copy[MEMBER];
        assert_eq!(r["bytes"], big.len());
        assert_eq!(r["sha256"], "abc");
        let excerpt = r["excerpt"].as_str().unwrap_or_default();
        assert!(excerpt.len() <= EXCERPT_BYTES);
        assert!(big.starts_with(excerpt), "cut on a character boundary");
        assert_eq!(hash_of(&copy), Some("abc"));
        assert_eq!(
            hash_of(&json!({"received": {"sha256": "x"}, "other": 1})),
            None
        );
    }

    #[test]
    fn long_hints_are_dropped() {
        assert_eq!(hint(Some("r-1")), Some("r-1".into()));
        assert_eq!(hint(Some(&"r".repeat(MAX_HINT_CHARS + 1))), None);
        assert_eq!(hint(None), None);
    }
}
