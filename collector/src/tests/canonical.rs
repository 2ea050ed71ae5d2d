//! The collector's canonical writer must write exactly what hipaa-core's `canonical_bytes` writes:
//! MACs, chain hashes and `audit verify` depend on those bytes.

use hipaa_core::audit::{canonical_bytes, FindingKind, IntegrityFinding, IntegrityRecord};
use serde_json::{json, Map, Number, Value};

use super::batch::tricky_batches;
use crate::canonical::{canonical, TAG_ROOM};

fn same(v: &Value) {
    let ours = canonical(v, 0);
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&canonical_bytes(v)),
        "for {v}"
    );
    assert_eq!(ours, canonical_bytes(v));
    let sized = canonical(v, ours.len());
    assert!(sized.capacity() >= sized.len() + TAG_ROOM);
}

#[test]
fn canonical_matches_core_on_records() {
    for batch in tricky_batches() {
        for v in &batch {
            same(v);
        }
    }
    let integrity = IntegrityRecord::new(
        super::NOW,
        Some("r\"1".into()),
        IntegrityFinding {
            finding: FindingKind::BadMac,
            chain_id: Some("c\u{1}".into()),
            seq: Some(u64::MAX),
            detail: "tab\there".into(),
            record: Some(json!({"z": [1, -2, 3.5], "a": {"y": null, "b": true}})),
        },
    );
    same(&serde_json::to_value(integrity).unwrap());
}

#[test]
fn canonical_matches_core_on_every_ascii_character_and_beyond() {
    let mut all = String::new();
    for c in (0u32..0x80).chain([0xe9, 0x2028, 0x2029, 0xfeff, 0x1f600]) {
        all.push(char::from_u32(c).unwrap());
    }
    same(&json!(all));
    same(&json!({ all.clone(): all.clone(), "": "", "\u{0}": [all] }));
    for n in [
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0.1),
        json!(-0.0),
        json!(1e300),
        json!(5e-324),
        json!(123456789.125),
    ] {
        same(&n);
        same(&json!([n.clone(), {"n": n}]));
    }
}

/// xorshift64*: deterministic values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}",
            "\u{1f}", "\u{7f}", "é", "€", "😀", "\u{2028}", "keyId", "mac", "chain",
        ];
        (0..self.below(8))
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 1),
            2 => json!(self.next()),
            3 => json!(-(self.below(1 << 62) as i64)),
            4 => Number::from_f64(f64::from_bits(self.next()))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            5 => Value::String(self.string()),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.below(6) {
                    let k = self.string();
                    m.insert(k, self.value(depth - 1));
                }
                Value::Object(m)
            }
        }
    }
}

#[test]
fn canonical_matches_core_on_random_values() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let v = rng.value(4);
        same(&v);
        // Also as parsed from text (what the server sees).
        same(&serde_json::from_str::<Value>(&v.to_string()).unwrap());
    }
}
