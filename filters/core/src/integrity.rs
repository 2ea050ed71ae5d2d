//! Payload integrity (45 CFR 164.312(c)(1), (e)(2)(i)): HMAC-SHA256 signatures over HTTP
//! bodies, so the receiving side can tell that a PHI or inference payload was not altered.
//!
//! # The signature header
//!
//! ```text
//! x-hipaa-signature: keyid=<id>; alg=hmac-sha256; sig=<base64url>
//! ```
//!
//! On requests (`verifyRequests`) it is a header the client sends. On responses
//! (`signResponses`, `inference`) it is an HTTP **trailer**: the filter signs the body as it
//! streams and appends the trailer at the end, so no response is buffered and there is no size
//! limit. (Proxy-Wasm on Envoy cannot add a header after reading the body: pausing the
//! response headers stops the body callbacks too.) A response without a body gets it as a
//! header. Trailers need HTTP/2 downstream (the mesh default between sidecars) or HTTP/1.1
//! with chunked encoding and Envoy's `enable_trailers`; a receiver that finds no signature
//! must treat the body as unsigned.
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
//! rotate (the first signs, any verifies by `keyid`). Parsed by `audit::MacKeyRing`, so the
//! filters, the collector and the CLI read one format.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::audit::{KeyError, MacKey, MacKeyRing};
use crate::policy::Policy;

/// The request and response header carrying a body signature.
pub const SIGNATURE_HEADER: &str = "x-hipaa-signature";
/// The only algorithm.
pub const ALG: &str = "hmac-sha256";
/// Domain separation from audit record MACs.
const BODY_CONTEXT: &[u8] = b"hipaa-mesh/body/v1\n";
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
pub fn load_keys(policy: &Policy, env_value: Option<&str>) -> Result<Option<MacKeyRing>, String> {
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
        Some(text) => MacKeyRing::parse(text)
            .map(Some)
            .map_err(|e| format!("environment variable {var}: {e}")),
    }
}

/// The header value for `body`, signed with `key`.
pub fn sign(key: &MacKey, body: &[u8]) -> String {
    let mut signer = BodySigner::new(key);
    signer.update(body);
    signer.finish()
}

/// Signs a body that arrives in chunks, without keeping it: memory stays constant whatever
/// the body's size.
#[derive(Clone)]
pub struct BodySigner {
    key_id: String,
    mac: HmacSha256,
}

impl std::fmt::Debug for BodySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl BodySigner {
    pub fn new(key: &MacKey) -> BodySigner {
        BodySigner {
            key_id: key.id().to_string(),
            mac: body_mac(key, b""),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    /// The signature header (or trailer) value.
    pub fn finish(self) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.mac.finalize().into_bytes());
        format!("keyid={}; alg={ALG}; sig={sig}", self.key_id)
    }
}

/// Checks a header value against `body` with the key of `keys` that its `keyid` names; the
/// MAC comparison is constant-time (`verify_slice`).
pub fn verify(keys: &MacKeyRing, header: &str, body: &[u8]) -> Result<(), VerifyError> {
    let sig = Signature::parse(header)?;
    let key = keys
        .get(&sig.key_id)
        .ok_or_else(|| VerifyError::UnknownKey(sig.key_id.clone()))?;
    body_mac(key, body)
        .verify_slice(&sig.mac)
        .map_err(|_| VerifyError::Mismatch)
}

fn body_mac(key: &MacKey, body: &[u8]) -> HmacSha256 {
    let mut mac = key.hmac();
    mac.update(BODY_CONTEXT);
    mac.update(body);
    mac
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn raw_key() -> Vec<u8> {
        (0u8..32).collect()
    }

    fn key() -> MacKey {
        MacKey::parse(&format!("k1:{HEX}")).unwrap()
    }

    fn ring() -> MacKeyRing {
        MacKeyRing::single(key())
    }

    #[test]
    fn the_audit_key_format_is_reused() {
        assert_eq!(key().id(), "k1");
        let derived = MacKey::parse(HEX).unwrap();
        assert!(derived.id().starts_with('k') && derived.id().len() == 17);
        assert!(MacKey::parse(&HEX[..62]).is_err());
        assert!(MacKey::parse(&format!("bad id:{HEX}")).is_err());
        assert!(!format!("{:?}", key()).contains("0a0b"));
    }

    #[test]
    fn sign_then_verify() {
        let h = sign(&key(), b"{\"risk\":0.42}");
        assert!(h.starts_with("keyid=k1; alg=hmac-sha256; sig="));
        assert_eq!(h.len(), "keyid=k1; alg=hmac-sha256; sig=".len() + 43);
        assert_eq!(verify(&ring(), &h, b"{\"risk\":0.42}"), Ok(()));
        assert_eq!(
            verify(&ring(), &h, b"{\"risk\":0.43}"),
            Err(VerifyError::Mismatch)
        );
        // empty bodies sign too
        assert_eq!(verify(&ring(), &sign(&key(), b""), b""), Ok(()));
    }

    #[test]
    fn streaming_equals_one_shot() {
        let body = b"{\"risk\":0.42,\"model\":\"sepsis\"}";
        for split in [0, 1, 7, body.len()] {
            let mut s = BodySigner::new(&key());
            s.update(&body[..split]);
            s.update(&body[split..]);
            assert_eq!(s.finish(), sign(&key(), body));
        }
        assert!(!format!("{:?}", BodySigner::new(&key())).contains("mac"));
    }

    #[test]
    fn known_answer() {
        // printf 'hipaa-mesh/body/v1\nhello' | openssl dgst -sha256 -mac HMAC \
        //   -macopt hexkey:000102...1f -binary | basenc --base64url
        assert_eq!(
            sign(&key(), b"hello"),
            "keyid=k1; alg=hmac-sha256; sig=PU9KhTvpaEuEKv0e2aIW13GYR_03Q1X4GTDu7AILdss"
        );
        let sig = Signature::parse(&sign(&key(), b"hello")).unwrap();
        let mut m = HmacSha256::new_from_slice(&raw_key()).unwrap();
        m.update(b"hipaa-mesh/body/v1\nhello");
        assert_eq!(sig.mac.to_vec(), m.finalize().into_bytes().to_vec());
    }

    #[test]
    fn another_key_or_key_id_does_not_verify() {
        let h = sign(&key(), b"x");
        let same_secret_other_id = MacKeyRing::single(MacKey::parse(&format!("k2:{HEX}")).unwrap());
        assert_eq!(
            verify(&same_secret_other_id, &h, b"x"),
            Err(VerifyError::UnknownKey("k1".into()))
        );
        let other = MacKeyRing::single(MacKey::parse(&format!("k1:{}", "ab".repeat(32))).unwrap());
        assert_eq!(verify(&other, &h, b"x"), Err(VerifyError::Mismatch));
    }

    #[test]
    fn parameters_in_any_order_with_optional_spaces() {
        let h = sign(&key(), b"x");
        let sig = h.rsplit_once("sig=").unwrap().1;
        for v in [
            format!("sig={sig};alg=hmac-sha256;keyid=k1"),
            format!("alg=hmac-sha256 ;  keyid=k1; sig={sig}"),
        ] {
            assert_eq!(verify(&ring(), &v, b"x"), Ok(()), "{v}");
        }
    }

    #[test]
    fn strict_parsing() {
        let h = sign(&key(), b"x");
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
                "keyid=k1; alg=hmac-sha256; sig={}+",
                sig.replace('_', "/").replace('-', "+")
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
                matches!(verify(&ring(), &c, b"x"), Err(VerifyError::Malformed(_))),
                "accepted: {c:?}"
            );
        }
    }

    #[test]
    fn key_rotation() {
        let old = format!("old:{}", "ab".repeat(32));
        let keys = MacKeyRing::parse(&format!("new:{HEX},{old}")).unwrap();
        let signed_new = sign(keys.current(), b"x");
        assert!(signed_new.starts_with("keyid=new;"));
        assert_eq!(verify(&keys, &signed_new, b"x"), Ok(()));
        let signed_old = sign(&MacKey::parse(&old).unwrap(), b"x");
        assert_eq!(verify(&keys, &signed_old, b"x"), Ok(()));
        assert_eq!(verify(&keys, &signed_old, b"y"), Err(VerifyError::Mismatch));
        let stranger = sign(&MacKey::parse(&format!("gone:{HEX}")).unwrap(), b"x");
        assert_eq!(
            verify(&keys, &stranger, b"x"),
            Err(VerifyError::UnknownKey("gone".into()))
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
        let mut m = HmacSha256::new_from_slice(&raw_key()).unwrap();
        m.update(b"{\"v\":1}");
        let plain = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        let h = format!("keyid=k1; alg=hmac-sha256; sig={plain}");
        assert_eq!(
            verify(&ring(), &h, b"{\"v\":1}"),
            Err(VerifyError::Mismatch)
        );
    }
}
