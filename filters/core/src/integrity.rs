//! Payload integrity (45 CFR 164.312(c)(1), (e)(2)(i)): HMAC-SHA256 signatures over HTTP
//! bodies, so the receiving side can tell that a PHI or inference payload was not altered.
//!
//! # The signature header
//!
//! ```text
//! x-hipaa-signature: keyid=<id>; alg=hmac-sha256; sig=<base64url>
//! ```
//!
//! - `keyid`: the id of the MAC key (`KEYID` of `KEYID:HEX`; for a bare `HEX` key, `k` and 16
//!   hex characters derived from the key, as in the audit records), 1 to 64 characters of
//!   `A-Z a-z 0-9 . _ -`.
//! - `alg`: exactly `hmac-sha256` (lower case); no other algorithm is accepted.
//! - `sig`: base64url without padding (RFC 4648 section 5) of the 32-byte
//!   `HMAC-SHA256(key, "hipaa-mesh/body/v1\n" || body)`.
//!
//! The three parameters are separated by `;` with optional spaces, each appears exactly once,
//! in any order, and nothing else may appear. The prefix separates body signatures from the
//! audit record MACs made with the same key: a record's MAC is never a valid body signature.
//! The signature covers the body bytes only (not the method, path, status or headers): it
//! shows the payload was not altered, not that it answers a particular request.
//!
//! # The key
//!
//! The same environment-provided key as the audit record MACs (`HIPAA_AUDIT_HMAC_KEY`):
//! `KEYID:HEX` or `HEX`, at least 32 bytes (64 hex characters); several comma-separated keys
//! rotate (the first signs, any verifies by `keyid`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::policy::Policy;

/// The request and response header carrying a body signature.
pub const SIGNATURE_HEADER: &str = "x-hipaa-signature";
/// The only algorithm.
pub const ALG: &str = "hmac-sha256";
/// Domain separation from audit record MACs.
const BODY_CONTEXT: &[u8] = b"hipaa-mesh/body/v1\n";
const MIN_KEY_BYTES: usize = 32;
const MAX_KEY_ID_LEN: usize = 64;
/// A header longer than this is refused before parsing.
const MAX_HEADER_LEN: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// The environment variable holding the key: `audit.macKeyEnv`, else `HIPAA_AUDIT_HMAC_KEY`.
pub fn key_env(policy: &Policy) -> &str {
    policy
        .spec
        .audit
        .as_ref()
        .map_or(DEFAULT_KEY_ENV, |a| a.mac_key_env.as_str())
}

pub const DEFAULT_KEY_ENV: &str = "HIPAA_AUDIT_HMAC_KEY";

/// The routes that sign responses or verify requests, by name.
pub fn routes_needing_keys(policy: &Policy) -> Vec<&str> {
    policy
        .routes
        .routes()
        .iter()
        .filter(|r| r.sign_responses || r.verify_requests)
        .map(|r| r.name.as_str())
        .collect()
}

/// The keys a filter starts with, from the value of [`key_env`] (None: unset). A policy that
/// signs or verifies bodies and has no usable key is a start-up error (one line, no key
/// material); a policy that does neither needs no key.
pub fn load_keys(policy: &Policy, env_value: Option<&str>) -> Result<Option<MacKeys>, String> {
    let needing = routes_needing_keys(policy);
    if needing.is_empty() {
        return Ok(None);
    }
    let var = key_env(policy);
    match env_value {
        None => Err(format!(
            "routes [{}] sign or verify bodies but the environment variable {var} is not set",
            needing.join(", ")
        )),
        Some(text) => MacKeys::parse(text)
            .map(Some)
            .map_err(|e| format!("environment variable {var}: {e}")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the MAC key is missing or empty")]
    Empty,
    #[error("the MAC key id must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadKeyId,
    #[error("the MAC key is not hexadecimal (expected HEX or KEYID:HEX)")]
    NotHex,
    #[error("the MAC key is {0} bytes; at least 32 are required (64 hex characters)")]
    TooShort(usize),
    #[error("the MAC key id {0:?} is given twice")]
    DuplicateKeyId(String),
}

/// A body-signing key: an id and at least 32 secret bytes. `Debug` never shows the secret.
#[derive(Clone)]
pub struct MacKey {
    id: String,
    /// Keyed with the secret; the raw key is not kept. Cloned for each use.
    keyed: HmacSha256,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MacKey {
    /// `KEYID:HEX` or `HEX` (surrounding whitespace ignored), as in `HIPAA_AUDIT_HMAC_KEY`.
    /// Without an explicit id the id is `k` and 16 hex characters of
    /// HMAC-SHA256(key, "hipaa-mesh key id v1"), the same id the audit records carry.
    pub fn parse(text: &str) -> Result<MacKey, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let (id, hex) = match text.split_once(':') {
            Some((id, hex)) => {
                if !valid_key_id(id) {
                    return Err(KeyError::BadKeyId);
                }
                (Some(id), hex)
            }
            None => (None, text),
        };
        let secret = decode_hex(hex).ok_or(KeyError::NotHex)?;
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(secret.len()));
        }
        // HMAC takes a key of any length; the error arm exists only in the generic API.
        let keyed = HmacSha256::new_from_slice(&secret).map_err(|_| KeyError::Empty)?;
        let id = match id {
            Some(id) => id.to_string(),
            None => derived_id(&keyed),
        };
        Ok(MacKey { id, keyed })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn body_mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(BODY_CONTEXT);
        mac.update(body);
        mac
    }

    /// The header value for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.body_mac(body).finalize().into_bytes());
        format!("keyid={}; alg={ALG}; sig={sig}", self.id)
    }

    /// Checks a parsed signature against `body`: constant-time MAC comparison.
    fn check(&self, sig: &Signature, body: &[u8]) -> Result<(), VerifyError> {
        self.body_mac(body)
            .verify_slice(&sig.mac)
            .map_err(|_| VerifyError::Mismatch)
    }

    /// Checks a header value against `body` with this one key.
    pub fn verify(&self, header: &str, body: &[u8]) -> Result<(), VerifyError> {
        let sig = Signature::parse(header)?;
        if sig.key_id != self.id {
            return Err(VerifyError::UnknownKey(sig.key_id));
        }
        self.check(&sig, body)
    }
}

fn derived_id(keyed: &HmacSha256) -> String {
    let mut mac = keyed.clone();
    mac.update(b"hipaa-mesh key id v1");
    let tag = mac.finalize().into_bytes();
    tag.iter().take(8).fold(String::from("k"), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    })
}

/// The keys from `HIPAA_AUDIT_HMAC_KEY`: one, or several separated by commas for rotation
/// (`new:HEX,old:HEX`). The first signs; any of them verifies, chosen by the header's `keyid`.
#[derive(Debug, Clone)]
pub struct MacKeys {
    keys: Vec<MacKey>,
}

impl MacKeys {
    pub fn parse(text: &str) -> Result<MacKeys, KeyError> {
        let mut keys: Vec<MacKey> = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let key = MacKey::parse(part)?;
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateKeyId(key.id));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(MacKeys { keys })
    }

    /// The signing key (the first).
    pub fn current(&self) -> Option<&MacKey> {
        self.keys.first()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The header value for `body`, signed with the first key.
    pub fn sign(&self, body: &[u8]) -> Option<String> {
        self.current().map(|k| k.sign(body))
    }

    /// Checks a header value against `body` with the key its `keyid` names.
    pub fn verify(&self, header: &str, body: &[u8]) -> Result<(), VerifyError> {
        let sig = Signature::parse(header)?;
        match self.keys.iter().find(|k| k.id == sig.key_id) {
            Some(k) => k.check(&sig, body),
            None => Err(VerifyError::UnknownKey(sig.key_id)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("the signature names key `{0}`, which is not the configured key")]
    UnknownKey(String),
    #[error("the signature does not match the body")]
    Mismatch,
}

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub mac: [u8; 32],
}

impl Signature {
    /// Strict: `keyid`, `alg` and `sig` exactly once each, nothing else, `alg=hmac-sha256`,
    /// `sig` unpadded base64url of exactly 32 bytes.
    pub fn parse(header: &str) -> Result<Signature, VerifyError> {
        if header.len() > MAX_HEADER_LEN {
            return Err(VerifyError::Malformed("too long"));
        }
        let (mut key_id, mut alg, mut sig) = (None, None, None);
        for param in header.split(';') {
            let param = param.trim_matches(' ');
            let (name, value) = param
                .split_once('=')
                .ok_or(VerifyError::Malformed("a parameter is not name=value"))?;
            let slot = match name {
                "keyid" => &mut key_id,
                "alg" => &mut alg,
                "sig" => &mut sig,
                _ => return Err(VerifyError::Malformed("unknown parameter")),
            };
            if slot.replace(value).is_some() {
                return Err(VerifyError::Malformed("repeated parameter"));
            }
        }
        let key_id = key_id.ok_or(VerifyError::Malformed("no keyid"))?;
        if !valid_key_id(key_id) {
            return Err(VerifyError::Malformed("bad keyid"));
        }
        if alg.ok_or(VerifyError::Malformed("no alg"))? != ALG {
            return Err(VerifyError::Malformed("alg must be hmac-sha256"));
        }
        let sig = sig.ok_or(VerifyError::Malformed("no sig"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| VerifyError::Malformed("sig is not unpadded base64url"))?;
        let mac: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VerifyError::Malformed("sig is not 32 bytes"))?;
        Ok(Signature {
            key_id: key_id.to_string(),
            mac,
        })
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit =
        |b: u8| -> Option<u8> { (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok()) };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> MacKey {
        MacKey::parse(&format!("k1:{HEX}")).unwrap()
    }

    #[test]
    fn key_formats() {
        assert_eq!(key().id(), "k1");
        let derived = MacKey::parse(HEX).unwrap();
        assert!(derived.id().starts_with('k') && derived.id().len() == 17);
        assert_eq!(
            MacKey::parse(&format!("  {}\n", HEX.to_uppercase()))
                .unwrap()
                .id(),
            derived.id()
        );
        assert_eq!(MacKey::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(
            MacKey::parse(&HEX[..62]).unwrap_err(),
            KeyError::TooShort(31)
        );
        assert_eq!(MacKey::parse(&HEX[..63]).unwrap_err(), KeyError::NotHex);
        assert_eq!(
            MacKey::parse(&format!("{}zz", &HEX[..62])).unwrap_err(),
            KeyError::NotHex
        );
        assert_eq!(
            MacKey::parse(&format!("bad id:{HEX}")).unwrap_err(),
            KeyError::BadKeyId
        );
        assert_eq!(
            MacKey::parse(&format!(":{HEX}")).unwrap_err(),
            KeyError::BadKeyId
        );
        assert!(!format!("{:?}", key()).contains("0a0b"));
    }

    #[test]
    fn sign_then_verify() {
        let k = key();
        let h = k.sign(b"{\"risk\":0.42}");
        assert!(h.starts_with("keyid=k1; alg=hmac-sha256; sig="));
        assert_eq!(h.len(), "keyid=k1; alg=hmac-sha256; sig=".len() + 43);
        assert_eq!(k.verify(&h, b"{\"risk\":0.42}"), Ok(()));
        assert_eq!(k.verify(&h, b"{\"risk\":0.43}"), Err(VerifyError::Mismatch));
        // empty bodies sign too
        assert_eq!(k.verify(&k.sign(b""), b""), Ok(()));
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key = bytes 0..32, "hipaa-mesh/body/v1\n" || "hello"), computed
        // independently with `openssl dgst -sha256 -mac HMAC -macopt hexkey:...`.
        let k = key();
        let h = k.sign(b"hello");
        let sig = Signature::parse(&h).unwrap();
        let mut m = HmacSha256::new_from_slice(&decode_hex(HEX).unwrap()).unwrap();
        m.update(b"hipaa-mesh/body/v1\nhello");
        assert_eq!(sig.mac.to_vec(), m.finalize().into_bytes().to_vec());
    }

    #[test]
    fn another_key_or_key_id_does_not_verify() {
        let h = key().sign(b"x");
        let same_secret_other_id = MacKey::parse(&format!("k2:{HEX}")).unwrap();
        assert_eq!(
            same_secret_other_id.verify(&h, b"x"),
            Err(VerifyError::UnknownKey("k1".into()))
        );
        let other = MacKey::parse(&format!("k1:{}", "ab".repeat(32))).unwrap();
        assert_eq!(other.verify(&h, b"x"), Err(VerifyError::Mismatch));
    }

    #[test]
    fn parameters_in_any_order_with_optional_spaces() {
        let h = key().sign(b"x");
        let sig = h.rsplit_once("sig=").unwrap().1;
        for v in [
            format!("sig={sig};alg=hmac-sha256;keyid=k1"),
            format!("alg=hmac-sha256 ;  keyid=k1; sig={sig}"),
        ] {
            assert_eq!(key().verify(&v, b"x"), Ok(()), "{v}");
        }
    }

    #[test]
    fn strict_parsing() {
        let h = key().sign(b"x");
        let sig = h.rsplit_once("sig=").unwrap().1.to_string();
        let cases = [
            String::new(),
            "keyid=k1; alg=hmac-sha256".into(),
            format!("keyid=k1; sig={sig}"),
            format!("alg=hmac-sha256; sig={sig}"),
            format!("keyid=k1; alg=HMAC-SHA256; sig={sig}"),
            format!("keyid=k1; alg=hmac-sha512; sig={sig}"),
            format!("keyid=k1; alg=hmac-sha256; sig={sig}="),
            format!(
                "keyid=k1; alg=hmac-sha256; sig={}",
                sig.replace('_', "/").replace('-', "+") + "+"
            ),
            format!("keyid=k1; alg=hmac-sha256; sig={}", &sig[..42]),
            format!("keyid=k1; alg=hmac-sha256; sig={sig}; sig={sig}"),
            format!("keyid=k1; keyid=k1; alg=hmac-sha256; sig={sig}"),
            format!("keyid=k1; alg=hmac-sha256; sig={sig}; extra=1"),
            format!("keyid=k1; alg=hmac-sha256; sig={sig};"),
            format!("keyid=k 1; alg=hmac-sha256; sig={sig}"),
            format!("keyid=; alg=hmac-sha256; sig={sig}"),
            format!("KEYID=k1; alg=hmac-sha256; sig={sig}"),
            format!("keyid=k1, alg=hmac-sha256, sig={sig}"),
            format!("keyid=k1; alg=hmac-sha256; sig={sig}{}", " ".repeat(300)),
        ];
        for c in cases {
            assert!(
                matches!(key().verify(&c, b"x"), Err(VerifyError::Malformed(_))),
                "accepted: {c:?}"
            );
        }
    }

    #[test]
    fn key_rotation() {
        let old = format!("old:{}", "ab".repeat(32));
        let keys = MacKeys::parse(&format!("new:{HEX}, {old}")).unwrap();
        assert_eq!(keys.ids().collect::<Vec<_>>(), ["new", "old"]);
        let signed_new = keys.sign(b"x").unwrap();
        assert!(signed_new.starts_with("keyid=new;"));
        assert_eq!(keys.verify(&signed_new, b"x"), Ok(()));
        let signed_old = MacKey::parse(&old).unwrap().sign(b"x");
        assert_eq!(keys.verify(&signed_old, b"x"), Ok(()));
        assert_eq!(keys.verify(&signed_old, b"y"), Err(VerifyError::Mismatch));
        let stranger = MacKey::parse(&format!("gone:{HEX}")).unwrap().sign(b"x");
        assert_eq!(
            keys.verify(&stranger, b"x"),
            Err(VerifyError::UnknownKey("gone".into()))
        );
        assert_eq!(
            MacKeys::parse(&format!("a:{HEX},a:{HEX}")).unwrap_err(),
            KeyError::DuplicateKeyId("a".into())
        );
        assert_eq!(MacKeys::parse(" , ").unwrap_err(), KeyError::Empty);
        assert_eq!(
            MacKeys::parse(&format!("a:{HEX},zz")).unwrap_err(),
            KeyError::NotHex
        );
    }

    fn policy(routes: serde_json::Value, audit_env: Option<&str>) -> Policy {
        let mut spec = serde_json::json!({
            "identity": {"providers": [{"name": "idp", "issuer": "https://idp.example",
                "audiences": ["a"], "jwks": {"cluster": "idp", "path": "/jwks.json"}}]},
            "routes": routes,
            "audit": {"collector": {"cluster": "audit-collector"}}
        });
        if let Some(env) = audit_env {
            spec["audit"]["macKeyEnv"] = env.into();
        }
        Policy::from_spec_value(spec).unwrap()
    }

    #[test]
    fn keys_are_required_only_where_bodies_are_signed_or_verified() {
        let plain = policy(
            serde_json::json!([{"name": "r", "match": {"pathPrefix": "/"}}]),
            None,
        );
        assert_eq!(key_env(&plain), "HIPAA_AUDIT_HMAC_KEY");
        assert!(load_keys(&plain, None).unwrap().is_none());

        let signing = policy(
            serde_json::json!([
                {"name": "orders", "match": {"pathPrefix": "/orders"}, "verifyRequests": true},
                {"name": "ai", "match": {"pathPrefix": "/ai"}, "signResponses": true}
            ]),
            Some("MY_KEY"),
        );
        assert_eq!(key_env(&signing), "MY_KEY");
        assert_eq!(routes_needing_keys(&signing), ["orders", "ai"]);
        let err = load_keys(&signing, None).unwrap_err();
        assert!(
            err.contains("MY_KEY") && err.contains("orders, ai"),
            "{err}"
        );
        let err = load_keys(&signing, Some("abcd")).unwrap_err();
        assert!(err.contains("MY_KEY") && !err.contains("abcd"), "{err}");
        let keys = load_keys(&signing, Some(&format!("k1:{HEX}")))
            .unwrap()
            .unwrap();
        assert_eq!(keys.ids().collect::<Vec<_>>(), ["k1"]);
    }

    #[test]
    fn record_macs_are_not_body_signatures() {
        // A plain HMAC of the body (what an audit record MAC is) does not verify.
        let mut m = HmacSha256::new_from_slice(&decode_hex(HEX).unwrap()).unwrap();
        m.update(b"{\"v\":1}");
        let plain = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        let h = format!("keyid=k1; alg=hmac-sha256; sig={plain}");
        assert_eq!(key().verify(&h, b"{\"v\":1}"), Err(VerifyError::Mismatch));
    }
}
