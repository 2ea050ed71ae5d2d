//! 32-byte values (keys, seeds, MACs, hashes) read from 64 hex digits: the one decoder the
//! parsers share. Writing is `hex::encode` (lower case) wherever hex is written.

/// The 32 bytes that exactly 64 hex digits spell, in either case (key material an operator
/// pastes); None for any other length or a byte that is not a hex digit.
pub fn decode(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// [`decode`] for values this project writes itself (MACs on the wire and in audit chains):
/// lower case only, as `hex::encode` writes them, so a value has one spelling.
pub fn decode_lower(text: &[u8]) -> Option<[u8; 32]> {
    if text.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWER: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn expected() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn reads_64_digits_and_writes_them_back_lower_case() {
        assert_eq!(decode(LOWER.as_bytes()), Some(expected()));
        assert_eq!(decode_lower(LOWER.as_bytes()), Some(expected()));
        assert_eq!(hex::encode(expected()), LOWER);
    }

    #[test]
    fn upper_case_is_read_only_where_operators_paste_keys() {
        let upper = LOWER.to_ascii_uppercase();
        assert_eq!(decode(upper.as_bytes()), Some(expected()));
        assert_eq!(decode_lower(upper.as_bytes()), None);
    }

    #[test]
    fn anything_but_64_hex_digits_is_refused() {
        let long = format!("{LOWER}00");
        let sign = format!("+{}", &LOWER[1..]);
        let space = format!(" {}", &LOWER[1..]);
        let non_hex = format!("g{}", &LOWER[1..]);
        for bad in [
            "",
            &LOWER[..63],
            &LOWER[..62],
            long.as_str(),
            sign.as_str(),
            space.as_str(),
            non_hex.as_str(),
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
            assert_eq!(decode_lower(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
