//! Hand-made tokens for the attack cases: a raw header and payload (exactly the bytes given,
//! duplicate members and odd types included) signed with the demo keys of [`crate::idp::Keys`],
//! and signature segments built byte by byte (ECDSA r/s edge values, wrong lengths).

use crate::idp::Keys;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};

/// The order n of the P-256 group (FIPS 186-4 D.1.2.3), big-endian.
pub const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// n - 1 for P-256.
pub fn p256_n_minus_1() -> [u8; 32] {
    let mut v = P256_N;
    v[31] -= 1;
    v
}

/// A 32-byte big-endian scalar holding a small value.
pub fn scalar(v: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[31] = v;
    s
}

/// A raw ECDSA signature segment (JWS form: r || s, 32 bytes each for ES256).
pub fn ecdsa_sig(r: &[u8; 32], s: &[u8; 32]) -> String {
    let mut sig = r.to_vec();
    sig.extend_from_slice(s);
    B64.encode(sig)
}

/// `alg` as the signing library names it.
fn algorithm(alg: &str) -> Algorithm {
    match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        other => panic!("no signer for {other}"),
    }
}

fn key_file(keys: &Keys, name: &str) -> Vec<u8> {
    std::fs::read(keys.dir.path().join(name)).unwrap()
}

/// The signing key of the demo IdP for `alg` (RS256, ES256, EdDSA).
pub fn signing_key(keys: &Keys, alg: &str) -> EncodingKey {
    match alg {
        "RS256" => EncodingKey::from_rsa_pem(&key_file(keys, "rsa.pem")).unwrap(),
        "ES256" => EncodingKey::from_ec_pem(&key_file(keys, "ec.pem")).unwrap(),
        "EdDSA" => EncodingKey::from_ed_pem(&key_file(keys, "ed25519.pem")).unwrap(),
        other => panic!("no demo key for {other}"),
    }
}

/// The demo RSA public key as SPKI PEM: what a key-confusion attacker uses as an HMAC secret.
pub fn rsa_public_pem(keys: &Keys) -> String {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let pem = String::from_utf8(key_file(keys, "rsa.pem")).unwrap();
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// `base64url(header) . base64url(payload)` signed with `key` under `alg`, the texts exactly as
/// given (no re-serialisation: duplicate members and odd types survive).
pub fn sign_with(key: &EncodingKey, alg: &str, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, algorithm(alg)).unwrap();
    format!("{input}.{sig}")
}

/// A token with a raw header and payload, validly signed by the demo IdP's `alg` key.
pub fn sign_raw(keys: &Keys, alg: &str, header: &str, payload: &str) -> String {
    sign_with(&signing_key(keys, alg), alg, header, payload)
}

/// `header.payload` of a token with `signature` (raw bytes) as its third segment.
pub fn with_signature(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header),
        B64.encode(payload),
        B64.encode(signature)
    )
}

/// The claims of a token the policy accepts (issuer, audience, a clinician with MFA and a
/// session, issued now for 10 minutes) as a JSON object; tests change one member at a time.
pub fn good_claims(sub: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": crate::idp::ISSUER, "aud": crate::idp::AUDIENCE, "sub": sub,
        "roles": ["clinician"], "amr": ["pwd", "otp"], "sid": format!("sid-{sub}"),
        "iat": now, "exp": now + 600
    })
}
