//! The header contract between the filters and the upstream (DESIGN.md).

/// Every header with this prefix is removed from incoming requests before anything else.
pub const RESERVED_PREFIX: &str = "x-hipaa-";

pub const SUBJECT: &str = "x-hipaa-subject";
pub const ROLES: &str = "x-hipaa-roles";
pub const SESSION: &str = "x-hipaa-session";
pub const BREAK_GLASS: &str = "x-hipaa-break-glass";
/// The token's `amr` values, comma-separated (for the audit record).
pub const AMR: &str = "x-hipaa-amr";
/// The denial reason code of whichever filter refused the request (for the audit record).
pub const DENIAL: &str = "x-hipaa-denial";

pub const REQUEST_ID: &str = "x-request-id";
pub const AUTHORIZATION: &str = "authorization";

/// True for a header a client must never be able to set.
pub fn is_reserved(name: &str) -> bool {
    name.as_bytes()
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes()))
}

/// Decodes a header map in the proxy-wasm pairs encoding (what `proxy_get_header_map_pairs`
/// and a map-valued `proxy_get_property` return): a little-endian u32 count, then a (name
/// length, value length) u32 pair per entry, then each name and value followed by a NUL.
/// Trailing bytes after the last entry are ignored (Envoy pads short results). None when the
/// bytes are not such a map or a name is not UTF-8; never panics.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let at = i.checked_mul(8)?;
        let name_len = word(at.checked_add(4)?)?;
        let value_len = word(at.checked_add(8)?)?;
        let name_end = data.checked_add(name_len)?;
        let name = bytes.get(data..name_end)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let value = bytes.get(value_start..value_end)?;
        pairs.push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
        data = value_end.checked_add(1)?;
    }
    (data <= bytes.len()).then_some(pairs)
}

#[cfg(test)]
mod tests {
    fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn pairs_decode_as_the_host_encodes_them() {
        let map = [
            (":path", "/fhir/Patient/1"),
            ("x-hipaa-subject", "alice"),
            ("empty", ""),
        ];
        let bytes = encode(&map);
        let decoded = super::decode_pairs(&bytes).unwrap();
        let expected: Vec<(String, Vec<u8>)> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(decoded, expected);
        // Envoy pads a short result; the padding is ignored.
        let mut padded = encode(&[]);
        padded.resize(30, 0);
        assert_eq!(super::decode_pairs(&padded), Some(vec![]));
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(super::decode_pairs(&padded).unwrap(), expected);
    }

    #[test]
    fn malformed_pairs_are_refused_without_panicking() {
        let bytes = encode(&[("a", "b"), ("cc", "dd")]);
        assert_eq!(super::decode_pairs(&[]), None);
        assert_eq!(super::decode_pairs(&[1, 0]), None);
        for cut in 0..bytes.len() - 1 {
            assert_eq!(super::decode_pairs(&bytes[..cut]), None, "cut at {cut}");
        }
        // A count that does not fit, and lengths that point past the end.
        assert_eq!(super::decode_pairs(&u32::MAX.to_le_bytes()), None);
        let mut long = bytes.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(super::decode_pairs(&long), None);
        // A name that is not UTF-8.
        let mut bad = encode(&[("ab", "v")]);
        bad[12] = 0xff;
        assert_eq!(super::decode_pairs(&bad), None);
    }

    #[test]
    fn reserved_prefix_is_case_insensitive() {
        assert!(super::is_reserved("x-hipaa-subject"));
        assert!(super::is_reserved("X-HIPAA-Roles"));
        assert!(!super::is_reserved("x-hipa"));
        assert!(!super::is_reserved("x-request-id"));
    }
}
