//! Parsing the timestamps records carry and reviewers type.
//!
//! The input is hostile (a reviewer's query parameter, an ingested record's `time`, both checked
//! before any MAC): it is read as bytes, every position through `get`, and only ASCII digits
//! and separators are accepted, so no byte sequence can slice inside a character or panic.

use crate::calendar::Date;

/// The ASCII digits of `b` as a number; None when `b` is empty or any byte is not a digit.
fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0i64, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339 `YYYY-MM-DDTHH:MM:SS[.fff...](Z|±HH:MM)`
/// into Unix milliseconds. Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let (date, rest) = s.as_bytes().split_at_checked(10)?;
    let date = Date::parse(std::str::from_utf8(date).ok()?)?;
    let day_ms = date.unix_start().checked_mul(1000)?;
    let Some((&t, rest)) = rest.split_first() else {
        return Some(day_ms);
    };
    if t != b'T' && t != b't' {
        return None;
    }
    let (hms, mut tail) = rest.split_at_checked(8)?;
    let [h1, h2, b':', m1, m2, b':', s1, s2] = *hms else {
        return None;
    };
    let (h, m, sec) = (digits(&[h1, h2])?, digits(&[m1, m2])?, digits(&[s1, s2])?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut millis = 0i64;
    if let Some(frac) = tail.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        let (all, after) = frac.split_at_checked(n)?;
        if all.is_empty() {
            return None;
        }
        let mut ms = [b'0'; 3];
        for (slot, c) in ms.iter_mut().zip(all) {
            *slot = *c;
        }
        millis = digits(&ms)?;
        tail = after;
    }
    let offset_secs = match *tail {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), o1, o2, b':', o3, o4] => {
            let off = digits(&[o1, o2])? * 3600 + digits(&[o3, o4])? * 60;
            if sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    day_ms.checked_add((h * 3600 + m * 60 + sec - offset_secs) * 1000 + millis)
}
