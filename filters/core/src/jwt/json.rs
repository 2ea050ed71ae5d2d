//! Strict JSON for token headers, payloads and key sets: an object at the top, and no member
//! name twice in any object at any depth. serde_json silently keeps the last of two equal
//! names, so a token could show one `iss` to one parser and another to the next (RFC 8725 3.11
//! asks to refuse such input); names are compared after unescaping, so `"a"` and `"\u0061"`
//! are the same member.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// Why a text is not strict JSON. Carries no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON at all (syntax, trailing data, bad UTF-8).
    Syntax,
    /// Valid JSON, but not an object at the top.
    NotObject,
    /// Some object names one member twice.
    DuplicateMember,
}

/// Parse `bytes` as one JSON object with no duplicate member names at any depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    // Two passes: serde_json builds the value (and owns the syntax rules), then a walk that
    // keeps nothing checks the names. Headers and payloads are small; this costs microseconds.
    let value: Value = serde_json::from_slice(bytes).map_err(|_| JsonError::Syntax)?;
    let Value::Object(map) = value else {
        return Err(JsonError::NotObject);
    };
    serde_json::from_slice::<NoDuplicates>(bytes).map_err(|_| JsonError::DuplicateMember)?;
    Ok(map)
}

/// Deserializes any JSON value, failing on a repeated member name in any object.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_unit<E: de::Error>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_none<E: de::Error>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(de::Error::custom("duplicate member"));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = parse_object(br#"{"a":1,"b":{"c":[1,{"d":2},{"d":3}]},"e":"x"}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert!(parse_object(b"{}").unwrap().is_empty());
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":{"c":1,"c":1}}"#,
            r#"{"a":[{"x":1},{"y":1,"y":2}]}"#,
            r#"{"iss":"a","\u0069ss":"b"}"#,
            r#"{"a":{"b":{"c":{"d":{"e":1,"e":1}}}}}"#,
        ] {
            assert_eq!(
                parse_object(text.as_bytes()),
                Err(JsonError::DuplicateMember),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_non_objects_and_bad_syntax() {
        for text in ["[]", "1", "\"x\"", "null", "true"] {
            assert_eq!(parse_object(text.as_bytes()), Err(JsonError::NotObject));
        }
        for text in ["", "{", "{\"a\":1}x", "{'a':1}", "{\"a\":1,}", "\u{feff}{}"] {
            assert_eq!(
                parse_object(text.as_bytes()),
                Err(JsonError::Syntax),
                "{text}"
            );
        }
        assert_eq!(
            parse_object(&[0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]),
            Err(JsonError::Syntax)
        );
    }
}
