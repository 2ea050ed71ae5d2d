//! Percent-decoding (RFC 3986) that refuses what it cannot read: the percent-encoding crate's
//! decoder passes a `%` not followed by two hex digits through as it is, so `%ZZ`, `%4` and a
//! trailing `%` would name something other than what was sent. Shared by the patient id
//! (authn and audit) and the collector's query strings.

use percent_encoding::percent_decode_str;

/// The bytes `text` spells, or None when a `%` is not followed by two hex digits (either
/// case). `+` is left as it is: form decoding is the caller's choice.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    well_formed(text).then(|| percent_decode_str(text).collect())
}

/// Every `%` starts `%XX` with two hex digits (a sign is no digit: `%+1` is refused).
fn well_formed(text: &str) -> bool {
    text.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_in_either_case_and_keeps_the_rest() {
        assert_eq!(decode("%34%35%36"), Some(b"456".to_vec()));
        assert_eq!(decode("%4a%4A"), Some(b"JJ".to_vec()));
        assert_eq!(decode("a+b%2B"), Some(b"a+b+".to_vec()));
        assert_eq!(
            decode("%25%32%35"),
            Some(b"%25".to_vec()),
            "decoded once, not twice"
        );
        assert_eq!(
            decode("%C3%28"),
            Some(vec![0xC3, 0x28]),
            "bytes, not yet UTF-8"
        );
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("é"), Some("é".as_bytes().to_vec()));
    }

    #[test]
    fn a_percent_without_two_hex_digits_is_refused() {
        for bad in [
            "%", "%4", "a%", "%ZZ", "%4G", "%G4", "%+1", "%-1", "%%41", "%41%", "%é1", "%4é",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
