//! Set-ups the core's tests share: the clock, MAC keys, Ed25519 token keys and tokens, the
//! usual claims, an in-memory session store and a provider for policies that need no keys.
//! Each was written out again in several test modules; one copy here keeps them alike.

use crate::audit::{MacKey, MacKeyRing};
use crate::authn::session::{self, SessionKey, SessionState};
use crate::authn::{SessionStore, SessionStoreUnavailable};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The tests' clock: 2026-11-23T00:00:00Z, in Unix seconds.
pub(crate) const NOW: u64 = 1_795_392_000;
/// The issuer of the tests' tokens.
pub(crate) const ISS: &str = "https://idp.example";

/// 32 bytes 00..1f in hex: the audit MAC key the audit and integrity tests use.
pub(crate) const MAC_KEY_HEX: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// [`MAC_KEY_HEX`] under the id `k1`.
pub(crate) fn mac_key() -> MacKey {
    MacKey::parse(&format!("k1:{MAC_KEY_HEX}")).unwrap()
}

/// A ring holding only [`mac_key`].
pub(crate) fn mac_ring() -> MacKeyRing {
    MacKeyRing::single(mac_key())
}

/// A ring holding one key `id` of 32 bytes `byte`.
pub(crate) fn ring_of(id: &str, byte: u8) -> MacKeyRing {
    MacKeyRing::single(MacKey::from_bytes(id, &[byte; 32]).unwrap())
}

/// The Ed25519 key of 32 bytes `seed`.
pub(crate) fn ed25519_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// The public JWK of [`ed25519_key`] `seed` as kid `kid`.
pub(crate) fn ed25519_jwk(seed: u8, kid: &str) -> Value {
    let x = URL_SAFE_NO_PAD.encode(ed25519_key(seed).verifying_key().as_bytes());
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

/// A JWKS text with the public key of [`ed25519_key`] `seed` as kid `k1`.
pub(crate) fn ed25519_jwks(seed: u8) -> String {
    json!({ "keys": [ed25519_jwk(seed, "k1")] }).to_string()
}

/// `claims` as an EdDSA token signed with [`ed25519_key`] `seed`, header kid `kid`.
pub(crate) fn eddsa_token_kid(seed: u8, kid: &str, claims: &Value) -> String {
    let der = ed25519_key(seed).to_pkcs8_der().unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

/// [`eddsa_token_kid`] with kid `k1`, the kid of [`ed25519_jwks`].
pub(crate) fn eddsa_token(seed: u8, claims: &Value) -> String {
    eddsa_token_kid(seed, "k1", claims)
}

/// A clinician's claims from [`ISS`] for audience `ehr`, signed in a minute before [`NOW`],
/// valid ten minutes after it, with a session id and two factors.
pub(crate) fn clinician_claims() -> Value {
    json!({"iss": ISS, "aud": "ehr", "sub": "alice", "roles": ["clinician"], "amr": ["pwd", "otp"],
           "sid": "s-1", "iat": NOW - 60, "exp": NOW + 600, "auth_time": NOW - 60})
}

/// A provider whose JWKS is fetched from a cluster: valid in a policy, no key material needed.
pub(crate) fn remote_idp() -> Value {
    json!({
        "name": "idp",
        "issuer": ISS,
        "audiences": ["ehr-api"],
        "jwks": {"cluster": "idp", "path": "/jwks.json"}
    })
}

/// Session buckets in memory, as the shared-data store keeps them; `broken` makes every
/// touch fail as an unavailable store does.
#[derive(Default)]
pub(crate) struct MemSessions {
    buckets: HashMap<String, Vec<u8>>,
    pub(crate) broken: bool,
}

impl SessionStore for MemSessions {
    fn touch(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle: u64,
    ) -> Result<SessionState, SessionStoreUnavailable> {
        if self.broken {
            return Err(SessionStoreUnavailable);
        }
        let bucket = self.buckets.entry(key.bucket_key()).or_default();
        let (state, bytes) = session::touch(bucket, key, now, idle);
        *bucket = bytes;
        Ok(state)
    }

    fn touch_seen(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle: u64,
    ) -> Result<(SessionState, Option<u64>), SessionStoreUnavailable> {
        let last = self
            .buckets
            .get(&key.bucket_key())
            .and_then(|b| session::last_seen(b, key));
        self.touch(key, now, idle).map(|s| (s, last))
    }
}
