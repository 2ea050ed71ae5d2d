//! Payload integrity (45 CFR 164.312(c)(1), (e)(2)(i)): signatures over HTTP bodies, so the
//! receiving side can tell that a PHI or inference payload was not altered.
//!
//! # One key, one purpose
//!
//! Three artefacts are sealed in the mesh, each with a key of its own, so that no holder of
//! one key can make another's artefact (issue #13):
//!
//! | artefact | key | who holds it |
//! |---|---|---|
//! | audit records (`chain.mac`) | `audit.macKeyEnv` (`HIPAA_AUDIT_HMAC_KEY`), HMAC | the audit filter VMs, the collector, `audit verify` |
//! | request bodies (`verifyRequests`) | `transport.integrity.requestKeyEnv` (`HIPAA_REQUEST_SIGNING_KEY`), HMAC | the transport VM of the receiving workload and the clients that sign |
//! | response bodies (`signResponses`, `inference`) | `transport.integrity.responseKeyEnv` (`HIPAA_RESPONSE_SIGNING_KEY`), Ed25519 private key | only the transport VM of the answering workload; receivers hold the **public** key |
//!
//! The policy refuses to name one variable for two purposes. A response verifier can check a
//! risk score but cannot make one; a signing client cannot seal an audit record (the
//! collector flags it: unknown key or bad MAC).
//!
//! # The signature header
//!
//! ```text
//! request:  x-hipaa-signature: keyid=<id>; alg=hmac-sha256; sig=<base64url of 32 bytes>
//! response: x-hipaa-signature: keyid=<id>; alg=ed25519; sig=<base64url of 64 bytes>
//! ```
//!
//! On requests (`verifyRequests`) it is a header the client sends:
//! `sig = HMAC-SHA256(request key, "hipaa-mesh/body/v1\n" || body)`. On responses
//! (`signResponses`, `inference`) it is an HTTP **trailer**: the filter hashes the body as it
//! streams and appends the trailer at the end, so no response is buffered and there is no size
//! limit: `sig = Ed25519(response key, "hipaa-mesh/response/v1\n" || SHA-256(body))` (RFC 8032
//! pure Ed25519 over that 55-byte message; verified strictly). (Proxy-Wasm on Envoy cannot add
//! a header after reading the body: pausing the response headers stops the body callbacks
//! too.) A response without a body gets it as a header. Trailers need HTTP/2 downstream (the
//! mesh default between sidecars) or HTTP/1.1 with chunked encoding and Envoy's
//! `enable_trailers`; a receiver that finds no signature must treat the body as unsigned.
//!
//! - `keyid`: the key's id (`KEYID` of `KEYID:HEX`; for a bare `HEX` key, `k` and 16 hex
//!   characters derived from the key: for Ed25519 from the public key, so signer and verifier
//!   derive the same id), 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
//! - `alg`: exactly `hmac-sha256` on requests and `ed25519` on responses (lower case); a
//!   verifier accepts only the algorithm of its purpose.
//! - `sig`: base64url without padding (RFC 4648 section 5).
//!
//! The three parameters are separated by `;` with optional spaces, each appears exactly once,
//! in any order, and nothing else may appear. The prefixes separate body signatures from each
//! other and from audit record MACs. A signature covers the body bytes only (not the method,
//! path, status or headers): it shows the payload was not altered, not that it answers a
//! particular request.
//!
//! # The keys
//!
//! Request key: `KEYID:HEX` or `HEX`, at least 32 bytes (64 hex characters); several
//! comma-separated keys rotate (the first signs, any verifies by `keyid`); parsed by
//! `audit::MacKeyRing`, the format the audit key uses. Response key: `KEYID:HEX` or `HEX`, the
//! 32-byte Ed25519 secret seed (64 hex characters), one key. Its public key, `KEYID:HEX` of the
//! 32-byte point (`hipaa-mesh integrity public-key`), is what receivers hold; several
//! comma-separated public keys rotate on the verifying side.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::audit::build::{BodyDigest, ResponseBody};
pub use crate::audit::{KeyError, MacKey, MacKeyRing};
use crate::policy::schema::Spec;
use crate::policy::Policy;

/// The request and response header carrying a body signature.
pub const SIGNATURE_HEADER: &str = "x-hipaa-signature";
/// The request-body algorithm.
pub const ALG: &str = "hmac-sha256";
/// The response-body algorithm.
pub const RESPONSE_ALG: &str = "ed25519";
/// Domain separation of request-body MACs from audit record MACs.
const BODY_CONTEXT: &[u8] = b"hipaa-mesh/body/v1\n";
/// Domain separation of response signatures (followed by the body's SHA-256).
const RESPONSE_CONTEXT: &[u8] = b"hipaa-mesh/response/v1\n";
const MAX_KEY_ID_LEN: usize = 64;
/// A header longer than this is refused before parsing.
const MAX_HEADER_LEN: usize = 256;
/// At most this many public keys on the verifying side.
const MAX_PUBLIC_KEYS: usize = 16;

type HmacSha256 = Hmac<Sha256>;

pub const DEFAULT_REQUEST_KEY_ENV: &str = "HIPAA_REQUEST_SIGNING_KEY";
pub const DEFAULT_RESPONSE_KEY_ENV: &str = "HIPAA_RESPONSE_SIGNING_KEY";

/// The environment variable holding the request-body HMAC key(s):
/// `transport.integrity.requestKeyEnv`, else `HIPAA_REQUEST_SIGNING_KEY`.
pub fn request_key_env(policy: &Policy) -> &str {
    policy.spec.transport.integrity.request_key_env.as_str()
}

/// The environment variable holding the response-signing Ed25519 key:
/// `transport.integrity.responseKeyEnv`, else `HIPAA_RESPONSE_SIGNING_KEY`.
pub fn response_key_env(policy: &Policy) -> &str {
    policy.spec.transport.integrity.response_key_env.as_str()
}

/// The routes that verify request bodies, by name.
pub fn routes_verifying_requests(policy: &Policy) -> Vec<&str> {
    policy
        .routes
        .routes()
        .iter()
        .filter(|r| r.verify_requests)
        .map(|r| r.name.as_str())
        .collect()
}

/// The routes that sign response bodies (`signResponses` or `inference`), by name.
pub fn routes_signing_responses(policy: &Policy) -> Vec<&str> {
    policy
        .routes
        .routes()
        .iter()
        .filter(|r| r.sign_responses)
        .map(|r| r.name.as_str())
        .collect()
}

/// The environment variables a transport VM needs for this policy, in a fixed order: the
/// request key when some route verifies requests, the response key when some route signs.
/// Never the audit MAC key.
pub fn transport_key_envs(policy: &Policy) -> Vec<&str> {
    transport_key_envs_of(&policy.spec)
}

/// [`transport_key_envs`] from the policy's spec alone (the renderers).
pub fn transport_key_envs_of(spec: &Spec) -> Vec<&str> {
    let mut envs = Vec::new();
    if spec.routes.iter().any(|r| r.verify_requests) {
        envs.push(spec.transport.integrity.request_key_env.as_str());
    }
    if spec
        .routes
        .iter()
        .any(|r| r.sign_responses || r.inference.is_some())
    {
        envs.push(spec.transport.integrity.response_key_env.as_str());
    }
    envs
}

/// The request-body keys a filter starts with, from the value of [`request_key_env`] (None:
/// unset). A policy that verifies request bodies and has no usable key is a start-up error
/// (one line, no key material); a policy that does not needs no key.
pub fn load_request_keys(
    policy: &Policy,
    env_value: Option<&str>,
) -> Result<Option<MacKeyRing>, String> {
    let needing = routes_verifying_requests(policy);
    if needing.is_empty() {
        return Ok(None);
    }
    let var = request_key_env(policy);
    match env_value {
        None => Err(format!(
            "routes [{}] verify request bodies but the environment variable {var} is not set",
            needing.join(", ")
        )),
        Some(text) => MacKeyRing::parse(text).map(Some).map_err(|e| {
            format!(
                "environment variable {var}: {}",
                e.to_string()
                    .replace("the audit MAC key", "the request-signing key")
            )
        }),
    }
}

/// The response-signing key a filter starts with, from the value of [`response_key_env`]
/// (None: unset). Required exactly when some route signs responses.
pub fn load_response_key(
    policy: &Policy,
    env_value: Option<&str>,
) -> Result<Option<ResponseSigningKey>, String> {
    let needing = routes_signing_responses(policy);
    if needing.is_empty() {
        return Ok(None);
    }
    let var = response_key_env(policy);
    match env_value {
        None => Err(format!(
            "routes [{}] sign responses but the environment variable {var} is not set",
            needing.join(", ")
        )),
        Some(text) => ResponseSigningKey::parse(text)
            .map(Some)
            .map_err(|e| format!("environment variable {var}: {e}")),
    }
}

// ---------------------------------------------------------------- request bodies (HMAC)

/// The request-body signature header value for `body`, signed with `key`.
pub fn sign(key: &MacKey, body: &[u8]) -> String {
    let mut mac = body_mac(key, b"");
    mac.update(body);
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("keyid={}; alg={ALG}; sig={sig}", key.id())
}

/// Checks a request-body header value against `body` with the key of `keys` that its `keyid`
/// names; the MAC comparison is constant-time (`verify_slice`).
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

// ---------------------------------------------------------------- response bodies (Ed25519)

/// The response-signing Ed25519 key and its id. `Debug` never shows the key.
#[derive(Clone)]
pub struct ResponseSigningKey {
    id: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for ResponseSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a response key was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseKeyError {
    #[error("the key is missing or empty")]
    Missing,
    #[error("the key is not 64 hexadecimal characters (expected HEX or KEYID:HEX of 32 bytes)")]
    NotHex32,
    #[error("the key id is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadKeyId,
    #[error("the public key is not a canonical Ed25519 point of full order")]
    WeakPublicKey,
    #[error("too many public keys (at most {MAX_PUBLIC_KEYS})")]
    TooMany,
    #[error("the public key id {0:?} is given twice")]
    DuplicateKeyId(String),
}

/// `KEYID:HEX` / `HEX` with HEX 32 bytes: (explicit id, bytes).
fn parse_key32(text: &str) -> Result<(Option<&str>, [u8; 32]), ResponseKeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ResponseKeyError::Missing);
    }
    let (id, hex) = match text.split_once(':') {
        Some((id, hex)) => {
            if !valid_key_id(id) {
                return Err(ResponseKeyError::BadKeyId);
            }
            (Some(id), hex)
        }
        None => (None, text),
    };
    let bytes = crate::hex32::decode(hex.trim().as_bytes()).ok_or(ResponseKeyError::NotHex32)?;
    Ok((id, bytes))
}

/// The id of a bare public key: `k` and 16 hex characters of SHA-256 over a label and the
/// public key, the same on the signing and the verifying side.
fn derived_public_id(public: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"hipaa-mesh response key id v1\n");
    h.update(public);
    let digest = h.finalize();
    let first = digest
        .first_chunk::<8>()
        .map_or_else(String::new, hex::encode);
    format!("k{first}")
}

impl ResponseSigningKey {
    /// Parses `KEYID:HEX` or `HEX` (the 32-byte Ed25519 seed).
    pub fn parse(text: &str) -> Result<ResponseSigningKey, ResponseKeyError> {
        let (id, seed) = parse_key32(text)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = match id {
            Some(id) => id.to_string(),
            None => derived_public_id(&key.verifying_key().to_bytes()),
        };
        Ok(ResponseSigningKey { id, key })
    }

    /// A key from a 32-byte seed with an explicit id (tools, tests).
    pub fn from_seed(id: &str, seed: &[u8; 32]) -> Result<ResponseSigningKey, ResponseKeyError> {
        if !valid_key_id(id) {
            return Err(ResponseKeyError::BadKeyId);
        }
        Ok(ResponseSigningKey {
            id: id.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The private key as `KEYID:HEX` (for `integrity keygen`; never logged).
    pub fn to_secret_text(&self) -> String {
        format!("{}:{}", self.id, hex::encode(self.key.to_bytes()))
    }

    /// The public key as `KEYID:HEX`, what receivers hold.
    pub fn public_key_text(&self) -> String {
        format!(
            "{}:{}",
            self.id,
            hex::encode(self.key.verifying_key().to_bytes())
        )
    }
}

/// The public keys a response verifier accepts, by id.
#[derive(Debug, Clone)]
pub struct ResponseVerifyingKeys {
    keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
}

impl ResponseVerifyingKeys {
    /// Parses comma-separated `KEYID:HEX` / `HEX` public keys (32 bytes each). Weak keys
    /// (non-canonical encodings, small-order points) are refused.
    pub fn parse(text: &str) -> Result<ResponseVerifyingKeys, ResponseKeyError> {
        let mut keys: Vec<(String, ed25519_dalek::VerifyingKey)> = Vec::new();
        for part in text.split(',') {
            if keys.len() == MAX_PUBLIC_KEYS {
                return Err(ResponseKeyError::TooMany);
            }
            let (id, bytes) = parse_key32(part)?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| ResponseKeyError::WeakPublicKey)?;
            if key.is_weak() || key.to_bytes() != bytes {
                return Err(ResponseKeyError::WeakPublicKey);
            }
            let id = id.map_or_else(|| derived_public_id(&bytes), str::to_string);
            if keys.iter().any(|(k, _)| *k == id) {
                return Err(ResponseKeyError::DuplicateKeyId(id));
            }
            keys.push((id, key));
        }
        Ok(ResponseVerifyingKeys { keys })
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    fn get(&self, id: &str) -> Option<&ed25519_dalek::VerifyingKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }
}

/// The response signature header value for `body`.
pub fn sign_response(key: &ResponseSigningKey, body: &[u8]) -> String {
    let mut signer = ResponseSigner::new(key);
    signer.update(body);
    signer.finish()
}

/// Signs a response body that arrives in chunks, without keeping it: the body is hashed as it
/// passes and the hash signed at the end, so memory stays constant whatever the body's size.
#[derive(Clone)]
pub struct ResponseSigner {
    key: ResponseSigningKey,
    body: BodyDigest,
}

impl std::fmt::Debug for ResponseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSigner")
            .field("key_id", &self.key.id)
            .finish_non_exhaustive()
    }
}

impl ResponseSigner {
    pub fn new(key: &ResponseSigningKey) -> ResponseSigner {
        ResponseSigner {
            key: key.clone(),
            body: BodyDigest::default(),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.body.update(chunk);
    }

    /// The signature header (or trailer) value.
    pub fn finish(self) -> String {
        self.finish_with_body().0
    }

    /// The signature header (or trailer) value and the body it signs as the audit record
    /// states it (its SHA-256 and this key's id): the body is hashed once for both.
    pub fn finish_with_body(self) -> (String, ResponseBody) {
        let body = self.body.finish(Some(self.key.id.clone()));
        let message = response_message(body.sha256);
        let sig = URL_SAFE_NO_PAD.encode(self.key.key.sign(&message).to_bytes());
        (
            format!("keyid={}; alg={RESPONSE_ALG}; sig={sig}", self.key.id),
            body,
        )
    }
}

fn response_message(body_hash: [u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RESPONSE_CONTEXT.len() + 32);
    m.extend_from_slice(RESPONSE_CONTEXT);
    m.extend_from_slice(&body_hash);
    m
}

/// Checks a response header value against `body` with the public key its `keyid` names
/// (`verify_strict`: no malleable or small-order signatures).
pub fn verify_response(
    keys: &ResponseVerifyingKeys,
    header: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let (key_id, sig) = parse_params(header, RESPONSE_ALG)?;
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| VerifyError::Malformed("sig is not 64 bytes"))?;
    let key = keys
        .get(&key_id)
        .ok_or_else(|| VerifyError::UnknownKey(key_id.clone()))?;
    let message = response_message(Sha256::digest(body).into());
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| VerifyError::Mismatch)
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

/// A parsed request-body signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub mac: [u8; 32],
}

impl Signature {
    /// Strict: `keyid`, `alg` and `sig` exactly once each, nothing else, `alg=hmac-sha256`,
    /// `sig` unpadded base64url of exactly 32 bytes.
    pub fn parse(header: &str) -> Result<Signature, VerifyError> {
        let (key_id, sig) = parse_params(header, ALG)?;
        let mac: [u8; 32] = sig
            .try_into()
            .map_err(|_| VerifyError::Malformed("sig is not 32 bytes"))?;
        Ok(Signature { key_id, mac })
    }
}

/// `keyid`, `alg` (must be `alg`) and `sig` exactly once each, nothing else; `sig` unpadded
/// base64url.
fn parse_params(header: &str, expected_alg: &str) -> Result<(String, Vec<u8>), VerifyError> {
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
    if alg.ok_or(VerifyError::Malformed("no alg"))? != expected_alg {
        return Err(VerifyError::Malformed(
            "alg is not the algorithm of this purpose (hmac-sha256 on requests, ed25519 on responses)",
        ));
    }
    let sig = sig.ok_or(VerifyError::Malformed("no sig"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| VerifyError::Malformed("sig is not unpadded base64url"))?;
    Ok((key_id.to_string(), bytes))
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

    use crate::test_support::{mac_key as key, mac_ring as ring, MAC_KEY_HEX as HEX};

    fn raw_key() -> Vec<u8> {
        (0u8..32).collect()
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
    fn response_streaming_equals_one_shot() {
        let body = b"{\"risk\":0.42,\"model\":\"sepsis\"}";
        let key = response_key();
        for split in [0, 1, 7, body.len()] {
            let mut s = ResponseSigner::new(&key);
            s.update(&body[..split]);
            s.update(&body[split..]);
            assert_eq!(s.finish(), sign_response(&key, body));
        }
        assert!(!format!("{:?}", ResponseSigner::new(&key)).contains(SEED));
        assert!(!format!("{key:?}").contains(SEED));
    }

    #[test]
    fn the_signed_body_as_the_record_states_it() {
        let body = b"{\"risk\":0.42,\"model\":\"sepsis\"}";
        let key = response_key();
        let mut s = ResponseSigner::new(&key);
        s.update(&body[..3]);
        s.update(&body[3..]);
        let (header, stated) = s.finish_with_body();
        // One hash serves both: the signature is the one-shot one, the digest the body's.
        assert_eq!(header, sign_response(&key, body));
        assert_eq!(stated.sha256, <[u8; 32]>::from(Sha256::digest(body)));
        assert_eq!(stated.bytes, body.len() as u64);
        assert_eq!(stated.signature_key_id.as_deref(), Some("r1"));
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

    fn policy(routes: serde_json::Value, integrity: Option<serde_json::Value>) -> Policy {
        let mut spec = serde_json::json!({
            "identity": {"providers": [{"name": "idp", "issuer": "https://idp.example",
                "audiences": ["a"], "jwks": {"cluster": "idp", "path": "/jwks.json"}}]},
            "routes": routes,
            "audit": {"collector": {"cluster": "audit-collector"}}
        });
        if let Some(i) = integrity {
            spec["transport"] = serde_json::json!({"integrity": i});
        }
        Policy::from_spec_value(spec).unwrap()
    }

    #[test]
    fn each_purpose_has_its_own_key_and_only_where_needed() {
        let plain = policy(
            serde_json::json!([{"name": "r", "match": {"pathPrefix": "/"}}]),
            None,
        );
        assert_eq!(request_key_env(&plain), "HIPAA_REQUEST_SIGNING_KEY");
        assert_eq!(response_key_env(&plain), "HIPAA_RESPONSE_SIGNING_KEY");
        assert!(transport_key_envs(&plain).is_empty());
        assert!(load_request_keys(&plain, None).unwrap().is_none());
        assert!(load_response_key(&plain, None).unwrap().is_none());

        let signing = policy(
            serde_json::json!([
                {"name": "orders", "match": {"pathPrefix": "/orders"}, "verifyRequests": true},
                {"name": "ai", "match": {"pathPrefix": "/ai"}, "signResponses": true}
            ]),
            Some(serde_json::json!({"requestKeyEnv": "MY_REQ", "responseKeyEnv": "MY_RESP"})),
        );
        assert_eq!(transport_key_envs(&signing), ["MY_REQ", "MY_RESP"]);
        assert_eq!(routes_verifying_requests(&signing), ["orders"]);
        assert_eq!(routes_signing_responses(&signing), ["ai"]);
        let err = load_request_keys(&signing, None).unwrap_err();
        assert!(err.contains("MY_REQ") && err.contains("orders"), "{err}");
        let err = load_response_key(&signing, None).unwrap_err();
        assert!(err.contains("MY_RESP") && err.contains("[ai]"), "{err}");
        let err = load_request_keys(&signing, Some("abcd")).unwrap_err();
        assert!(
            err.contains("MY_REQ") && !err.contains("abcd") && !err.contains("audit"),
            "{err}"
        );
        let err = load_response_key(&signing, Some(&format!("r1:{}", &SEED[..62]))).unwrap_err();
        assert!(
            err.contains("MY_RESP") && !err.contains(&SEED[..62]),
            "{err}"
        );
        let keys = load_request_keys(&signing, Some(&format!("k1:{HEX}")))
            .unwrap()
            .unwrap();
        assert_eq!(keys.ids().collect::<Vec<_>>(), ["k1"]);
        let key = load_response_key(&signing, Some(&format!("r1:{SEED}")))
            .unwrap()
            .unwrap();
        assert_eq!(key.id(), "r1");

        // Only what is needed: a verifying-only policy asks for no response key.
        let verifying = policy(
            serde_json::json!([{"name": "orders", "match": {"pathPrefix": "/orders"}, "verifyRequests": true}]),
            None,
        );
        assert_eq!(
            transport_key_envs(&verifying),
            ["HIPAA_REQUEST_SIGNING_KEY"]
        );
        assert!(load_response_key(&verifying, None).unwrap().is_none());
    }

    /// The policy cannot name one variable for two purposes.
    #[test]
    fn one_variable_cannot_serve_two_purposes() {
        let spec = |integrity: serde_json::Value, mac_env: &str| {
            serde_json::json!({
                "identity": {"providers": [{"name": "idp", "issuer": "https://idp.example",
                    "audiences": ["a"], "jwks": {"cluster": "idp", "path": "/jwks.json"}}]},
                "routes": [{"name": "r", "match": {"pathPrefix": "/"}, "verifyRequests": true}],
                "audit": {"collector": {"cluster": "audit-collector"}, "macKeyEnv": mac_env},
                "transport": {"integrity": integrity}
            })
        };
        for (integrity, mac_env, key) in [
            (
                serde_json::json!({"requestKeyEnv": "HIPAA_AUDIT_HMAC_KEY"}),
                "HIPAA_AUDIT_HMAC_KEY",
                "spec.transport.integrity.requestKeyEnv",
            ),
            (
                serde_json::json!({"responseKeyEnv": "K"}),
                "K",
                "spec.transport.integrity.responseKeyEnv",
            ),
            (
                serde_json::json!({}),
                "HIPAA_REQUEST_SIGNING_KEY",
                "spec.transport.integrity.requestKeyEnv",
            ),
            (
                serde_json::json!({"requestKeyEnv": "K", "responseKeyEnv": "K"}),
                "HIPAA_AUDIT_HMAC_KEY",
                "spec.transport.integrity.responseKeyEnv",
            ),
            (
                serde_json::json!({"requestKeyEnv": "lower"}),
                "HIPAA_AUDIT_HMAC_KEY",
                "spec.transport.integrity.requestKeyEnv",
            ),
        ] {
            let err = Policy::from_spec_value(spec(integrity.clone(), mac_env)).unwrap_err();
            assert!(
                err.summary().contains(key),
                "{integrity} / {mac_env}: {}",
                err.summary()
            );
        }
        let ok = Policy::from_spec_value(spec(
            serde_json::json!({"requestKeyEnv": "A_REQ", "responseKeyEnv": "A_RESP"}),
            "A_AUDIT",
        ))
        .unwrap();
        assert_eq!(transport_key_envs(&ok), ["A_REQ"]);
        assert_eq!(transport_key_envs_of(&ok.spec), ["A_REQ"]);
    }

    // RFC 8032 section 7.1, TEST 1: secret key and public key.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn response_key() -> ResponseSigningKey {
        ResponseSigningKey::parse(&format!("r1:{SEED}")).unwrap()
    }

    fn public_keys() -> ResponseVerifyingKeys {
        ResponseVerifyingKeys::parse(&format!("r1:{PUBLIC}")).unwrap()
    }

    #[test]
    fn response_keys_parse_and_derive_the_public_key() {
        let key = response_key();
        assert_eq!(key.public_key_text(), format!("r1:{PUBLIC}"));
        assert_eq!(key.to_secret_text(), format!("r1:{SEED}"));
        // A bare key's id comes from the public key: signer and verifier agree on it.
        let bare = ResponseSigningKey::parse(SEED).unwrap();
        let bare_public = ResponseVerifyingKeys::parse(PUBLIC).unwrap();
        assert!(bare.id().starts_with('k') && bare.id().len() == 17);
        assert_eq!(bare_public.ids().collect::<Vec<_>>(), [bare.id()]);
        let h = sign_response(&bare, b"x");
        assert_eq!(verify_response(&bare_public, &h, b"x"), Ok(()));
        for bad in [
            "",
            "r1:",
            &SEED[..62],
            &format!("r 1:{SEED}"),
            &format!("{SEED}00"),
        ] {
            assert!(ResponseSigningKey::parse(bad).is_err(), "{bad:?}");
        }
        // Small-order points and non-canonical encodings are not public keys.
        let identity = format!("01{}", "00".repeat(31));
        assert_eq!(
            ResponseVerifyingKeys::parse(&identity).err(),
            Some(ResponseKeyError::WeakPublicKey)
        );
        assert!(matches!(
            ResponseVerifyingKeys::parse(&format!("a:{PUBLIC},a:{PUBLIC}")),
            Err(ResponseKeyError::DuplicateKeyId(_))
        ));
    }

    #[test]
    fn response_sign_then_verify_with_the_public_key() {
        let body = b"{\"risk\":0.42}";
        let h = sign_response(&response_key(), body);
        assert!(h.starts_with("keyid=r1; alg=ed25519; sig="), "{h}");
        assert_eq!(h.len(), "keyid=r1; alg=ed25519; sig=".len() + 86);
        assert_eq!(verify_response(&public_keys(), &h, body), Ok(()));
        assert_eq!(
            verify_response(&public_keys(), &h, b"{\"risk\":0.01}"),
            Err(VerifyError::Mismatch)
        );
        // Known answer: pure Ed25519 over the context and the body's SHA-256.
        let mut message = b"hipaa-mesh/response/v1\n".to_vec();
        message.extend_from_slice(&Sha256::digest(body));
        let expected =
            ed25519_dalek::SigningKey::from_bytes(&crate::hex32::decode(SEED.as_bytes()).unwrap())
                .sign(&message)
                .to_bytes();
        assert_eq!(
            h.rsplit_once("sig=").unwrap().1,
            URL_SAFE_NO_PAD.encode(expected)
        );
        // A rotated-away or unknown key id.
        let other = ResponseSigningKey::from_seed("r2", &[9u8; 32]).unwrap();
        assert_eq!(
            verify_response(&public_keys(), &sign_response(&other, body), body),
            Err(VerifyError::UnknownKey("r2".into()))
        );
        let both =
            ResponseVerifyingKeys::parse(&format!("r1:{PUBLIC},{}", other.public_key_text()))
                .unwrap();
        assert_eq!(
            verify_response(&both, &sign_response(&other, body), body),
            Ok(())
        );
    }

    /// Issue #13 item 3: what a verifier holds (the public key) makes no signature, and the
    /// other purposes' keys make no response signature either.
    #[test]
    fn a_verifier_cannot_forge_a_response_signature() {
        let forged = b"{\"risk\":0.01}";
        let public = crate::hex32::decode(PUBLIC.as_bytes()).unwrap();
        // The public key used as an HMAC key, under either algorithm name.
        let as_mac = MacKey::from_bytes("r1", &public).unwrap();
        let hmac_sig = sign(&as_mac, forged);
        assert!(verify_response(&public_keys(), &hmac_sig, forged).is_err());
        let relabelled = hmac_sig.replace("alg=hmac-sha256", "alg=ed25519");
        assert!(verify_response(&public_keys(), &relabelled, forged).is_err());
        // The public key used as an Ed25519 seed.
        let as_seed = ResponseSigningKey::from_seed("r1", &public).unwrap();
        assert_eq!(
            verify_response(&public_keys(), &sign_response(&as_seed, forged), forged),
            Err(VerifyError::Mismatch)
        );
        // A request-body (HMAC) signature is never a response signature, nor the reverse.
        assert!(verify_response(&public_keys(), &sign(&key(), forged), forged).is_err());
        let resp = sign_response(&response_key(), forged);
        assert!(matches!(
            verify(&ring(), &resp, forged),
            Err(VerifyError::Malformed(_))
        ));
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
