//! Weak and malformed JWKS keys, one table: each is refused at load (the whole set fails, naming
//! the key) or, for keys that cannot verify tokens here (`use: enc`, algorithms outside the
//! allow-list), skipped and never used. Complements the per-rule tests in `tests.rs`.

use super::*;
use crate::policy::schema::{Algorithm, Identity};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

const RSA_DER: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa2048.der");
const RSA_JWK: &str = include_str!("../../tests/fixtures/jwt/rsa2048.jwk.json");
const ROGUE_JWK: &str = include_str!("../../tests/fixtures/jwt/rsa2048_rogue.jwk.json");
const RSA_1024_JWK: &str = include_str!("../../tests/fixtures/jwt/rsa1024.jwk.json");
const P256_JWK: &str = include_str!("../../tests/fixtures/jwt/p256.jwk.json");
const P384_JWK: &str = include_str!("../../tests/fixtures/jwt/p384.jwk.json");
const ED_JWK: &str = include_str!("../../tests/fixtures/jwt/ed25519.jwk.json");

const ISS: &str = "https://idp.hospital.example";
const NOW: u64 = 1_800_000_000;

fn key(text: &str, extra: Value) -> Value {
    let mut key: Value = serde_json::from_str(text).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        key[k] = v.clone();
    }
    key
}

fn load(keys: Vec<Value>) -> Result<KeySet, JwksError> {
    KeySet::from_jwks_json(&json!({ "keys": keys }).to_string(), &Algorithm::ALL)
}

fn problem(keys: Vec<Value>) -> KeyProblem {
    match load(keys) {
        Err(JwksError::Key { problem, .. }) => problem,
        other => panic!("expected a key problem, got {other:?}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn member(key: &Value, name: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap()
}

#[test]
fn weak_and_malformed_keys_are_refused_at_load() {
    let rsa = key(RSA_JWK, json!({}));
    let n = member(&rsa, "n");
    // The P-256 field prime: a coordinate equal to it is not a canonical field element.
    let p256_p: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    let p256 = key(P256_JWK, json!({}));
    let cases: Vec<(&str, Value, KeyProblem)> = vec![
        (
            "RSA 1024-bit modulus",
            key(RSA_1024_JWK, json!({"kid": "k"})),
            KeyProblem::RsaModulusSize(1024),
        ),
        (
            "RSA modulus one bit short of 2048",
            key(
                RSA_JWK,
                json!({"n": b64(&[&[0x7fu8][..], &n[1..]].concat())}),
            ),
            KeyProblem::RsaModulusSize(2047),
        ),
        (
            "RSA e = 1",
            key(RSA_JWK, json!({"e": "AQ"})),
            KeyProblem::RsaExponent,
        ),
        (
            "RSA e = 65536 (even)",
            key(RSA_JWK, json!({"e": b64(&[1, 0, 0])})),
            KeyProblem::RsaExponent,
        ),
        (
            "RSA even modulus",
            key(
                RSA_JWK,
                json!({"n": b64(&[&n[..255], &[n[255] & 0xfe][..]].concat())}),
            ),
            KeyProblem::RsaModulusEven,
        ),
        (
            "P-256 point off the curve",
            key(
                P256_JWK,
                json!({"y": b64(&{ let mut y = member(&p256, "y"); y[31] ^= 1; y })}),
            ),
            KeyProblem::NotOnCurve("P-256"),
        ),
        (
            "P-256 x coordinate = p (not canonical)",
            key(P256_JWK, json!({"x": b64(&p256_p)})),
            KeyProblem::NotOnCurve("P-256"),
        ),
        (
            "P-384 point off the curve",
            key(
                P384_JWK,
                json!({"x": b64(&{ let mut x = member(&key(P384_JWK, json!({})), "x"); x[47] ^= 1; x })}),
            ),
            KeyProblem::NotOnCurve("P-384"),
        ),
        (
            "P-256 key declared for ES384 (wrong curve)",
            key(P256_JWK, json!({"alg": "ES384"})),
            KeyProblem::WrongCurve {
                alg: "ES384",
                crv: "P-256".into(),
                needs: "P-384",
            },
        ),
        (
            "secp256k1 key declared for ES256 (wrong curve)",
            key(P256_JWK, json!({"alg": "ES256", "crv": "secp256k1"})),
            KeyProblem::WrongCurve {
                alg: "ES256",
                crv: "secp256k1".into(),
                needs: "P-256",
            },
        ),
        (
            "P-384-sized coordinates under crv P-256",
            key(
                P256_JWK,
                json!({"x": b64(&[1u8; 48]), "y": b64(&[1u8; 48])}),
            ),
            KeyProblem::CoordinateLength {
                member: "x",
                bytes: 32,
                crv: "P-256",
            },
        ),
        (
            "Ed25519 small-order point",
            key(
                ED_JWK,
                json!({"x": b64(&{ let mut b = [0u8; 32]; b[0] = 1; b })}),
            ),
            KeyProblem::WeakEd25519,
        ),
        (
            "RSA private key",
            key(RSA_JWK, json!({"d": "AQAB"})),
            KeyProblem::PrivateKey("d"),
        ),
        (
            "EC private key",
            key(P256_JWK, json!({"d": "AQAB"})),
            KeyProblem::PrivateKey("d"),
        ),
        (
            "Ed25519 private key (RFC 8037 A.1)",
            json!({"kty": "OKP", "crv": "Ed25519",
                   "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
                   "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            KeyProblem::PrivateKey("d"),
        ),
        (
            "symmetric key",
            json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}),
            KeyProblem::Symmetric,
        ),
    ];
    for (what, bad, expected) in cases {
        // Beside a good key, the bad key still fails the whole set.
        let err = load(vec![key(ED_JWK, json!({"kid": "good"})), bad.clone()]).unwrap_err();
        match err {
            JwksError::Key { key, problem } => {
                assert_eq!(key.index, 1, "{what}");
                assert_eq!(problem, expected, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Duplicate `kid`: the second key named.
    let err = load(vec![
        key(RSA_JWK, json!({"kid": "same"})),
        key(P256_JWK, json!({"kid": "same"})),
    ])
    .unwrap_err();
    assert!(matches!(
        err,
        JwksError::Key {
            key: KeyRef { index: 1, .. },
            problem: KeyProblem::DuplicateKid
        }
    ));
}

#[test]
fn non_canonical_ed25519_encodings_are_refused() {
    // Encodings of y + p (p = 2^255 - 19) for small y: ed25519-dalek decompresses some of them
    // to a valid, not small-order point. Only the canonical encoding is a key.
    let mut found = 0;
    for k in 0u8..19 {
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xed + k;
        bytes[31] = 0x7f;
        let Ok(point) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else {
            continue;
        };
        let expected = if point.is_weak() {
            KeyProblem::WeakEd25519
        } else {
            found += 1;
            KeyProblem::InvalidEd25519
        };
        let refused = problem(vec![key(ED_JWK, json!({"x": b64(&bytes)}))]);
        // A non-canonical encoding is refused before the small-order check.
        assert_eq!(refused, KeyProblem::InvalidEd25519, "{k}: {expected:?}");
    }
    assert!(found > 0, "no non-canonical encoding of a full-order point");
    // The sign bit set on the identity's x = 0: non-canonical too.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    identity[31] = 0x80;
    assert!(matches!(
        load(vec![key(ED_JWK, json!({"x": b64(&identity)}))]),
        Err(JwksError::Key {
            problem: KeyProblem::InvalidEd25519 | KeyProblem::WeakEd25519,
            ..
        })
    ));
}

fn identity() -> Identity {
    serde_json::from_value(json!({"providers": [{
        "name": "idp", "issuer": ISS, "audiences": ["ehr-api"],
        "jwks": {"cluster": "idp", "path": "/jwks"},
        "algorithms": ["RS256", "ES256"], "clockSkewSeconds": 30, "maxTokenLifetimeSeconds": 3600,
    }]}))
    .unwrap()
}

fn signed(kid: Option<&str>) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let claims = json!({"iss": ISS, "aud": "ehr-api", "sub": "dr-house",
                        "iat": NOW - 10, "exp": NOW + 600});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(RSA_DER)).unwrap()
}

fn verify(token: &str, keys: &KeySet) -> Result<VerifiedToken, TokenError> {
    let identity = identity();
    let providers = [ProviderKeys {
        provider: &identity.providers[0],
        keys: Some(keys),
    }];
    verify_token(token, &identity, &providers, NOW)
}

#[test]
fn an_encryption_key_is_never_used_to_verify() {
    // The signer's own public key, published for encryption (`use: enc`), beside another
    // signing key. The enc key would verify the token's signature; it is never used.
    let text = json!({"keys": [
        key(RSA_JWK, json!({"kid": "enc", "use": "enc"})),
        key(ROGUE_JWK, json!({"kid": "sig", "use": "sig"})),
    ]})
    .to_string();
    let keys = KeySet::from_jwks_json(&text, &Algorithm::ALL).unwrap();
    assert_eq!(keys.len(), 1);
    // Named by `kid`: refused as a key that cannot verify here.
    assert_eq!(
        verify(&signed(Some("enc")), &keys),
        Err(TokenError::KeyNotUsable)
    );
    // Without `kid`: the only usable key is the other one, and the signature fails.
    assert_eq!(verify(&signed(None), &keys), Err(TokenError::BadSignature));
    // Published for signing, the same key verifies the same token: the refusals above are the
    // `use`, not the key.
    let text = json!({"keys": [key(RSA_JWK, json!({"kid": "enc", "use": "sig"}))]}).to_string();
    let keys = KeySet::from_jwks_json(&text, &Algorithm::ALL).unwrap();
    assert!(verify(&signed(Some("enc")), &keys).is_ok());
    // `key_ops` without "verify" is skipped the same way.
    let text = json!({"keys": [
        key(RSA_JWK, json!({"kid": "wrap", "key_ops": ["wrapKey"]})),
        key(ROGUE_JWK, json!({"kid": "sig"})),
    ]})
    .to_string();
    let keys = KeySet::from_jwks_json(&text, &Algorithm::ALL).unwrap();
    assert_eq!(
        verify(&signed(Some("wrap")), &keys),
        Err(TokenError::KeyNotUsable)
    );
}

#[test]
fn a_key_for_an_algorithm_outside_the_allow_list_is_never_used() {
    // The signer's key declared `alg: RS256`, the provider allows ES256 only: skipped at load,
    // and a token naming it is refused.
    let text = json!({"keys": [
        key(RSA_JWK, json!({"kid": "rsa", "alg": "RS256"})),
        key(P256_JWK, json!({"kid": "ec"})),
    ]})
    .to_string();
    let keys = KeySet::from_jwks_json(&text, &[Algorithm::ES256]).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        verify(&signed(Some("rsa")), &keys),
        Err(TokenError::KeyNotUsable)
    );
}
