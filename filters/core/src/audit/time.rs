//! Parsing the timestamps records carry and reviewers type.

use crate::calendar::Date;

/// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339 `YYYY-MM-DDTHH:MM:SS[.fff...](Z|±HH:MM)`
/// into Unix milliseconds. Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let date = Date::parse(s.get(0..10)?)?;
    let day_ms = date.unix_start() * 1000;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(day_ms);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t'))?;
    let b = rest.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = rest.get(r)?;
        if p.bytes().all(|c| c.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    let (h, m, sec) = (num(0..2)?, num(3..5)?, num(6..8)?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut tail = &rest[8..];
    let mut millis = 0i64;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut ms_digits: String = frac[..digits].chars().take(3).collect();
        while ms_digits.len() < 3 {
            ms_digits.push('0');
        }
        millis = ms_digits.parse().ok()?;
        tail = &frac[digits..];
    }
    let offset_secs = match tail {
        "Z" | "z" => 0,
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) && &t[3..4] == ":" => {
            let oh: i64 = t.get(1..3)?.parse().ok()?;
            let om: i64 = t.get(4..6)?.parse().ok()?;
            let off = oh * 3600 + om * 60;
            if t.starts_with('-') {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    Some(day_ms + ((h * 3600 + m * 60 + sec - offset_secs) * 1000) + millis)
}
