//! Tests for the whole jwt module: tokens signed at test time with fixed test keys
//! (tests/fixtures/jwt, made by gen.py), every acceptance and every refusal by its variant.

use super::*;
use crate::policy::schema::{Algorithm, Identity};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

const ISS: &str = "https://idp.hospital.example";
const AUD: &str = "ehr-api";
const NOW: u64 = 1_800_000_000;

struct Fixture {
    der: &'static [u8],
    jwk: &'static str,
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            der: include_bytes!(concat!("../../tests/fixtures/jwt/", $name, ".der")),
            jwk: include_str!(concat!("../../tests/fixtures/jwt/", $name, ".jwk.json")),
        }
    };
}

const RSA: Fixture = fixture!("rsa2048");
const RSA_ROGUE: Fixture = fixture!("rsa2048_rogue");
const RSA_8192: Fixture = fixture!("rsa8192");
const RSA_1024: Fixture = fixture!("rsa1024");
const P256: Fixture = fixture!("p256");
const P256_ROGUE: Fixture = fixture!("p256_rogue");
const P384: Fixture = fixture!("p384");
const ED: Fixture = fixture!("ed25519");
const ED_ROGUE: Fixture = fixture!("ed25519_rogue");

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwt_alg(name: &str) -> jsonwebtoken::Algorithm {
    name.parse().unwrap()
}

fn encoding_key(fx: &Fixture, alg: &str) -> EncodingKey {
    match alg {
        a if a.starts_with("RS") || a.starts_with("PS") => EncodingKey::from_rsa_der(fx.der),
        a if a.starts_with("ES") => EncodingKey::from_ec_der(fx.der),
        "EdDSA" => EncodingKey::from_ed_der(fx.der),
        other => panic!("no key for {other}"),
    }
}

/// Sign exactly these header and payload texts (so tests can put anything in them).
fn sign_raw(header: &str, payload: &str, fx: &Fixture, alg: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &encoding_key(fx, alg), jwt_alg(alg)).unwrap();
    format!("{input}.{sig}")
}

fn header(alg: &str, kid: Option<&str>) -> Value {
    match kid {
        Some(kid) => json!({"alg": alg, "typ": "JWT", "kid": kid}),
        None => json!({"alg": alg, "typ": "JWT"}),
    }
}

fn sign(fx: &Fixture, alg: &str, kid: Option<&str>, claims: &Value) -> String {
    sign_raw(&header(alg, kid).to_string(), &claims.to_string(), fx, alg)
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "dr-house", "iat": NOW - 10, "exp": NOW + 600,
        "roles": ["clinician"], "amr": ["pwd", "otp"], "sid": "s-1", "auth_time": NOW - 100,
    })
}

fn with(mut value: Value, key: &str, v: Value) -> Value {
    value[key] = v;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

/// A JWK from a fixture with `kid` and (optionally) `alg` added.
fn jwk(fx: &Fixture, kid: Option<&str>, alg: Option<&str>) -> Value {
    let mut key: Value = serde_json::from_str(fx.jwk).unwrap();
    if let Some(kid) = kid {
        key["kid"] = json!(kid);
    }
    if let Some(alg) = alg {
        key["alg"] = json!(alg);
    }
    key
}

fn jwks(keys: Vec<Value>) -> String {
    json!({ "keys": keys }).to_string()
}

fn algs(names: &[&str]) -> Vec<Algorithm> {
    names
        .iter()
        .map(|n| Algorithm::from_name(n).unwrap())
        .collect()
}

fn all_algs() -> Vec<Algorithm> {
    Algorithm::ALL.to_vec()
}

/// Issuer, keys (None: not fetched yet), allow-list.
type ProviderSpec<'a> = (&'a str, Option<Vec<Value>>, Vec<Algorithm>);

/// An identity with one provider per (issuer, allow-list) and the given JWKS texts loaded.
struct Env {
    identity: Identity,
    sets: Vec<Option<KeySet>>,
}

impl Env {
    fn new(keys: Vec<Value>, allowed: Vec<Algorithm>) -> Env {
        Env::multi(vec![(ISS, Some(keys), allowed)])
    }

    fn multi(providers: Vec<ProviderSpec<'_>>) -> Env {
        let mut sets = Vec::new();
        let mut specs = Vec::new();
        for (i, (issuer, keys, allowed)) in providers.into_iter().enumerate() {
            let set = keys.map(|k| KeySet::from_jwks_json(&jwks(k), &allowed).unwrap());
            sets.push(set);
            specs.push(json!({
                "name": format!("idp{i}"), "issuer": issuer, "audiences": [AUD, "other-api"],
                "jwks": {"cluster": "idp", "path": "/jwks"},
                "algorithms": allowed, "clockSkewSeconds": 30, "maxTokenLifetimeSeconds": 3600,
            }));
        }
        let identity = serde_json::from_value(json!({ "providers": specs })).unwrap();
        Env { identity, sets }
    }

    fn with_identity(mut self, patch: Value) -> Env {
        let mut value = serde_json::to_value(&self.identity).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            value[k] = v.clone();
        }
        self.identity = serde_json::from_value(value).unwrap();
        self
    }

    fn verify_at(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        let providers: Vec<ProviderKeys<'_>> = self
            .identity
            .providers
            .iter()
            .zip(&self.sets)
            .map(|(provider, keys)| ProviderKeys {
                provider,
                keys: keys.as_ref(),
            })
            .collect();
        verify_token(token, &self.identity, &providers, now)
    }

    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_at(token, NOW)
    }
}

fn rsa_env() -> Env {
    Env::new(vec![jwk(&RSA, Some("rsa"), Some("RS256"))], all_algs())
}

fn rsa_token(claims: &Value) -> String {
    sign(&RSA, "RS256", Some("rsa"), claims)
}

// ------------------------------------------------------------------ accepted tokens

#[test]
fn accepts_every_algorithm_with_its_bound_key() {
    let cases: [(&Fixture, &str); 9] = [
        (&RSA, "RS256"),
        (&RSA, "RS384"),
        (&RSA, "RS512"),
        (&RSA, "PS256"),
        (&RSA, "PS384"),
        (&RSA, "PS512"),
        (&P256, "ES256"),
        (&P384, "ES384"),
        (&ED, "EdDSA"),
    ];
    for (fx, alg) in cases {
        let env = Env::new(vec![jwk(fx, Some("k1"), Some(alg))], all_algs());
        let token = sign(fx, alg, Some("k1"), &claims());
        let verified = env
            .verify(&token)
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(
            verified,
            VerifiedToken {
                provider: 0,
                issuer: ISS.into(),
                subject: Some("dr-house".into()),
                roles: vec!["clinician".into()],
                amr: vec!["pwd".into(), "otp".into()],
                session: Some("s-1".into()),
                auth_time: Some(NOW - 100),
                iat: NOW - 10,
                exp: NOW + 600,
                key: verified.key,
            },
            "{alg}"
        );
        assert!(verified.key.is_some(), "{alg}: the verifying key is named");
        assert_eq!(
            verified
                .key
                .map(|k| env.sets[0].as_ref().unwrap().has_key(&k)),
            Some(true),
            "{alg}"
        );
    }
}

#[test]
fn keys_without_alg_derive_it() {
    // EC and OKP keys: from the curve. RSA keys: the RSA algorithms of the allow-list.
    let env = Env::new(
        vec![
            jwk(&RSA, Some("r"), None),
            jwk(&P256, Some("e2"), None),
            jwk(&P384, Some("e3"), None),
            jwk(&ED, Some("ed"), None),
        ],
        algs(&["RS256", "PS256", "ES256", "ES384", "EdDSA"]),
    );
    for (fx, alg, kid) in [
        (&RSA, "RS256", "r"),
        (&RSA, "PS256", "r"),
        (&P256, "ES256", "e2"),
        (&P384, "ES384", "e3"),
        (&ED, "EdDSA", "ed"),
    ] {
        assert!(
            env.verify(&sign(fx, alg, Some(kid), &claims())).is_ok(),
            "{alg}"
        );
    }
    // RS512 is not in the allow-list: refused before any key is looked at.
    assert_eq!(
        env.verify(&sign(&RSA, "RS512", Some("r"), &claims())),
        Err(TokenError::AlgNotAllowed)
    );
    // ES256 signature presented for the P-384 key.
    assert_eq!(
        env.verify(&sign(&P256, "ES256", Some("e3"), &claims())),
        Err(TokenError::KeyAlgMismatch)
    );
}

#[test]
fn rsa_keys_above_4096_bits_verify() {
    let env = Env::new(vec![jwk(&RSA_8192, Some("big"), None)], all_algs());
    assert_eq!(env.sets[0].as_ref().unwrap().len(), 1);
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let token = sign(&RSA_8192, alg, Some("big"), &claims());
        assert!(env.verify(&token).is_ok(), "{alg}");
        let mut tampered = token.into_bytes();
        let last = tampered.len() - 5;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            env.verify(std::str::from_utf8(&tampered).unwrap()),
            Err(TokenError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn second_provider_is_selected_by_issuer() {
    let env = Env::multi(vec![
        (ISS, Some(vec![jwk(&RSA, Some("a"), None)]), all_algs()),
        (
            "https://other.example",
            Some(vec![jwk(&ED, Some("b"), None)]),
            all_algs(),
        ),
    ]);
    let token = sign(
        &ED,
        "EdDSA",
        Some("b"),
        &with(claims(), "iss", json!("https://other.example")),
    );
    let verified = env.verify(&token).unwrap();
    assert_eq!(verified.provider, 1);
    assert_eq!(verified.issuer, "https://other.example");
    // The other provider's keys do not verify a token claiming the first issuer.
    let token = sign(&ED, "EdDSA", Some("b"), &claims());
    assert_eq!(env.verify(&token), Err(TokenError::UnknownKid));
}

// ------------------------------------------------------------------ signatures and keys

#[test]
fn tampered_payload_or_signature_is_refused() {
    let env = rsa_env();
    let token = rsa_token(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(with(claims(), "roles", json!(["admin"]))
        .to_string()
        .as_bytes());
    assert_eq!(
        env.verify(&format!("{}.{}.{}", parts[0], forged, parts[2])),
        Err(TokenError::BadSignature)
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    assert_eq!(
        env.verify(&format!("{}.{}.{}", parts[0], parts[1], b64(&sig))),
        Err(TokenError::BadSignature)
    );
    // A signature of the wrong length.
    assert_eq!(
        env.verify(&format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..100]))),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn alg_none_is_refused_in_every_case() {
    let env = rsa_env();
    let payload = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let head = b64(json!({"alg": alg, "kid": "rsa"}).to_string().as_bytes());
        for sig in ["", "AAAA"] {
            assert_eq!(
                env.verify(&format!("{head}.{payload}.{sig}")),
                Err(TokenError::AlgNotAllowed),
                "{alg} {sig:?}"
            );
        }
        // And with a real RS256 signature over the same input.
        let real = rsa_token(&claims());
        let sig = real.rsplit('.').next().unwrap();
        assert_eq!(
            env.verify(&format!("{head}.{payload}.{sig}")),
            Err(TokenError::AlgNotAllowed)
        );
    }
    for bad in [
        json!({"kid": "rsa"}),
        json!({"alg": null}),
        json!({"alg": 256}),
    ] {
        let head = b64(bad.to_string().as_bytes());
        assert_eq!(
            env.verify(&format!("{head}.{payload}.AAAA")),
            Err(TokenError::Malformed)
        );
    }
}

#[test]
fn alg_is_case_sensitive() {
    let env = rsa_env();
    let token = sign_raw(
        &json!({"alg": "rs256", "kid": "rsa"}).to_string(),
        &claims().to_string(),
        &RSA,
        "RS256",
    );
    assert_eq!(env.verify(&token), Err(TokenError::AlgNotAllowed));
}

#[test]
fn alg_swap_to_another_rsa_algorithm_is_refused() {
    // The key is bound to RS256; a PS256 signature by the same private key must not pass.
    let env = rsa_env();
    let token = sign(&RSA, "PS256", Some("rsa"), &claims());
    assert_eq!(env.verify(&token), Err(TokenError::KeyAlgMismatch));
    // With PS256 outside the allow-list the refusal comes earlier.
    let env = Env::new(
        vec![jwk(&RSA, Some("rsa"), Some("RS256"))],
        algs(&["RS256"]),
    );
    assert_eq!(env.verify(&token), Err(TokenError::AlgNotAllowed));
}

#[test]
fn hmac_with_the_public_key_as_secret_is_refused() {
    let env = rsa_env();
    let public: Value = serde_json::from_str(RSA.jwk).unwrap();
    let n = URL_SAFE_NO_PAD
        .decode(public["n"].as_str().unwrap())
        .unwrap();
    for (alg, secret) in [
        ("HS256", RSA.jwk.as_bytes().to_vec()),
        ("HS256", n.clone()),
        ("HS384", n.clone()),
        ("HS512", n),
    ] {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": "rsa"}).to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(&secret),
            jwt_alg(alg),
        )
        .unwrap();
        assert_eq!(
            env.verify(&format!("{input}.{sig}")),
            Err(TokenError::AlgNotAllowed)
        );
    }
}

#[test]
fn keys_in_the_header_are_refused() {
    let env = rsa_env();
    let rogue = jwk(&RSA_ROGUE, Some("rsa"), Some("RS256"));
    for (member, value) in [
        ("jwk", rogue),
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut head = header("RS256", Some("rsa"));
        head[member] = value;
        // Signed by the real key, so only the header member can be the reason.
        let token = sign_raw(&head.to_string(), &claims().to_string(), &RSA, "RS256");
        assert_eq!(
            env.verify(&token),
            Err(TokenError::HeaderKeyRefused(member))
        );
    }
}

#[test]
fn crit_zip_and_jwe_are_refused() {
    let env = rsa_env();
    let signed = |head: Value| sign_raw(&head.to_string(), &claims().to_string(), &RSA, "RS256");
    let base = header("RS256", Some("rsa"));
    assert_eq!(
        env.verify(&signed(with(base.clone(), "crit", json!(["exp"])))),
        Err(TokenError::CritUnsupported)
    );
    assert_eq!(
        env.verify(&signed(with(base.clone(), "crit", json!([])))),
        Err(TokenError::CritUnsupported)
    );
    assert_eq!(
        env.verify(&signed(with(base.clone(), "zip", json!("DEF")))),
        Err(TokenError::ZipUnsupported)
    );
    assert_eq!(
        env.verify(&signed(with(base.clone(), "enc", json!("A256GCM")))),
        Err(TokenError::JweUnsupported)
    );
    assert_eq!(
        env.verify(&signed(with(base.clone(), "b64", json!(false)))),
        Err(TokenError::Malformed)
    );
    assert!(env.verify(&signed(with(base, "b64", json!(true)))).is_ok());
    let jwe_header = b64(json!({"alg": "RSA-OAEP", "enc": "A256GCM"})
        .to_string()
        .as_bytes());
    assert_eq!(
        env.verify(&format!("{jwe_header}.AAAA.AAAA.AAAA.AAAA")),
        Err(TokenError::JweUnsupported)
    );
}

#[test]
fn duplicate_members_are_refused() {
    let env = rsa_env();
    let payload = claims().to_string();
    let body = payload.trim_start_matches('{');
    for (head, payload) in [
        (
            r#"{"alg":"RS256","kid":"rsa","kid":"rsa"}"#.to_string(),
            payload.clone(),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa","alg":"RS256"}"#.to_string(),
            payload.clone(),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa"}"#.to_string(),
            format!(r#"{{"sub":"mallory",{body}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa"}"#.to_string(),
            format!(r#"{{"\u0073ub":"mallory",{body}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa"}"#.to_string(),
            format!(r#"{{"ext":{{"a":[{{"b":1,"b":2}}]}},{body}"#),
        ),
    ] {
        let token = sign_raw(&head, &payload, &RSA, "RS256");
        assert_eq!(
            env.verify(&token),
            Err(TokenError::DuplicateMember),
            "{head} {payload}"
        );
    }
}

#[test]
fn bad_encodings_and_shapes_are_malformed() {
    let env = rsa_env();
    let token = rsa_token(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let not_object = b64(b"[1,2]");
    let not_json = b64(b"{\"iss\":");
    for bad in [
        String::new(),
        "abc".to_string(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}.{s}.{s}.{s}"),
        format!(".{p}.{s}"),
        format!("{h}..{s}"),
        format!("{h}.{p}."),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}+.{s}"),
        format!("{h}.{p}/.{s}"),
        format!("{h} .{p}.{s}"),
        format!("{h}.{p}.{s}\n"),
        format!("{h}.{p}é.{s}"),
        format!("{not_object}.{p}.{s}"),
        format!("{h}.{not_object}.{s}"),
        format!("{h}.{not_json}.{s}"),
        format!("Bearer {h}.{p}.{s}"),
    ] {
        assert_eq!(env.verify(&bad), Err(TokenError::Malformed), "{bad:?}");
    }
    // Standard base64 (with '+' or '/') is not base64url.
    let std_sig =
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(URL_SAFE_NO_PAD.decode(s).unwrap());
    if std_sig != s {
        assert_eq!(
            env.verify(&format!("{h}.{p}.{std_sig}")),
            Err(TokenError::Malformed)
        );
    }
}

#[test]
fn oversized_tokens_are_refused_first() {
    let env = rsa_env();
    let big = "A".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(env.verify(&big), Err(TokenError::TooLarge));
    // A properly signed token that is too long is refused too.
    let padded = with(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES)));
    assert_eq!(env.verify(&rsa_token(&padded)), Err(TokenError::TooLarge));
    // Just under the bound is fine.
    let fits = with(claims(), "pad", json!("x".repeat(5000)));
    let token = rsa_token(&fits);
    assert!(token.len() <= MAX_TOKEN_BYTES);
    assert!(env.verify(&token).is_ok());
}

#[test]
fn unknown_kid_and_rogue_keys() {
    let env = Env::new(
        vec![
            jwk(&RSA, Some("rsa"), Some("RS256")),
            jwk(&P256, Some("ec"), None),
            jwk(&ED, Some("ed"), None),
        ],
        all_algs(),
    );
    assert_eq!(
        env.verify(&sign(&RSA, "RS256", Some("nope"), &claims())),
        Err(TokenError::UnknownKid)
    );
    // A rogue key signing under a known kid.
    for (fx, alg, kid) in [
        (&RSA_ROGUE, "RS256", "rsa"),
        (&P256_ROGUE, "ES256", "ec"),
        (&ED_ROGUE, "EdDSA", "ed"),
    ] {
        assert_eq!(
            env.verify(&sign(fx, alg, Some(kid), &claims())),
            Err(TokenError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn all_zero_and_degenerate_signatures_are_refused() {
    let env = Env::new(
        vec![
            jwk(&P256, Some("e2"), None),
            jwk(&P384, Some("e3"), None),
            jwk(&ED, Some("ed"), None),
            jwk(&RSA, Some("rsa"), None),
        ],
        all_algs(),
    );
    let payload = b64(claims().to_string().as_bytes());
    for (alg, kid, len) in [
        ("ES256", "e2", 64),
        ("ES384", "e3", 96),
        ("EdDSA", "ed", 64),
        ("RS256", "rsa", 256),
        ("ES256", "e2", 1),
        ("ES256", "e2", 65),
    ] {
        let head = b64(header(alg, Some(kid)).to_string().as_bytes());
        let zeros = b64(&vec![0u8; len]);
        assert_eq!(
            env.verify(&format!("{head}.{payload}.{zeros}")),
            Err(TokenError::BadSignature),
            "{alg} {len}"
        );
    }
    // ECDSA with r = s = n - 0 style garbage: all 0xff.
    let head = b64(header("ES256", Some("e2")).to_string().as_bytes());
    assert_eq!(
        env.verify(&format!("{head}.{payload}.{}", b64(&[0xff; 64]))),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn kid_selection_rules() {
    // One key: a token without kid may use it.
    let env = Env::new(vec![jwk(&RSA, Some("rsa"), Some("RS256"))], all_algs());
    assert!(env.verify(&sign(&RSA, "RS256", None, &claims())).is_ok());
    assert_eq!(
        env.verify(&sign(&RSA, "PS256", None, &claims())),
        Err(TokenError::KeyAlgMismatch)
    );
    let env = Env::new(vec![jwk(&ED, None, None)], all_algs());
    assert!(env.verify(&sign(&ED, "EdDSA", None, &claims())).is_ok());
    // A kid the set does not have, even if the set's only key has none.
    assert_eq!(
        env.verify(&sign(&ED, "EdDSA", Some("x"), &claims())),
        Err(TokenError::UnknownKid)
    );
    // Several keys, no kid: only if exactly one key is bound to the token's algorithm.
    let env = Env::new(
        vec![
            jwk(&RSA, Some("r1"), Some("RS256")),
            jwk(&RSA_ROGUE, Some("r2"), Some("RS256")),
            jwk(&ED, Some("ed"), None),
        ],
        all_algs(),
    );
    assert!(env.verify(&sign(&ED, "EdDSA", None, &claims())).is_ok());
    assert_eq!(
        env.verify(&sign(&RSA, "RS256", None, &claims())),
        Err(TokenError::UnknownKid)
    );
    assert_eq!(
        env.verify(&sign(&P256, "ES256", None, &claims())),
        Err(TokenError::UnknownKid)
    );
    // kid must be a string.
    let token = sign_raw(
        &json!({"alg": "EdDSA", "kid": 7}).to_string(),
        &claims().to_string(),
        &ED,
        "EdDSA",
    );
    assert_eq!(env.verify(&token), Err(TokenError::Malformed));
}

#[test]
fn kid_of_a_skipped_key_is_not_usable() {
    let mut enc = jwk(&RSA_ROGUE, Some("enc-key"), Some("RSA-OAEP"));
    enc["use"] = json!("enc");
    let env = Env::new(vec![jwk(&RSA, Some("rsa"), None), enc], all_algs());
    assert_eq!(env.sets[0].as_ref().unwrap().len(), 1);
    assert_eq!(
        env.verify(&sign(&RSA_ROGUE, "RS256", Some("enc-key"), &claims())),
        Err(TokenError::KeyNotUsable)
    );
}

#[test]
fn provider_selection_and_key_availability() {
    let env = rsa_env();
    assert_eq!(
        env.verify(&rsa_token(&with(
            claims(),
            "iss",
            json!("https://evil.example")
        ))),
        Err(TokenError::UnknownIssuer)
    );
    // Issuer comparison is exact.
    assert_eq!(
        env.verify(&rsa_token(&with(claims(), "iss", json!(format!("{ISS}/"))))),
        Err(TokenError::UnknownIssuer)
    );
    assert_eq!(
        env.verify(&rsa_token(&without(claims(), "iss"))),
        Err(TokenError::MissingClaim("iss".into()))
    );
    assert_eq!(
        env.verify(&rsa_token(&with(claims(), "iss", json!([ISS])))),
        Err(TokenError::BadClaimType("iss".into()))
    );
    // A remote JWKS not fetched yet.
    let env = Env::multi(vec![(ISS, None, all_algs())]);
    assert_eq!(
        env.verify(&rsa_token(&claims())),
        Err(TokenError::KeysNotLoaded)
    );
    // The provider's allow-list is applied before the keys are consulted.
    let env = Env::multi(vec![(ISS, None, algs(&["ES256"]))]);
    assert_eq!(
        env.verify(&rsa_token(&claims())),
        Err(TokenError::AlgNotAllowed)
    );
}

// ------------------------------------------------------------------ claims

#[test]
fn audience_rules() {
    let env = rsa_env();
    for ok in [
        json!(AUD),
        json!([AUD]),
        json!(["x", "other-api"]),
        json!(["x", AUD]),
    ] {
        assert!(
            env.verify(&rsa_token(&with(claims(), "aud", ok.clone())))
                .is_ok(),
            "{ok}"
        );
    }
    for wrong in [json!("x"), json!([]), json!(["x", "y"]), json!("EHR-API")] {
        assert_eq!(
            env.verify(&rsa_token(&with(claims(), "aud", wrong))),
            Err(TokenError::WrongAudience)
        );
    }
    for bad in [
        json!(1),
        json!([AUD, 1]),
        json!({"a": AUD}),
        json!(null),
        json!(true),
    ] {
        assert_eq!(
            env.verify(&rsa_token(&with(claims(), "aud", bad))),
            Err(TokenError::BadClaimType("aud".into()))
        );
    }
    assert_eq!(
        env.verify(&rsa_token(&without(claims(), "aud"))),
        Err(TokenError::MissingClaim("aud".into()))
    );
}

#[test]
fn exp_and_iat_are_required_integers() {
    let env = rsa_env();
    for name in ["exp", "iat"] {
        assert_eq!(
            env.verify(&rsa_token(&without(claims(), name))),
            Err(TokenError::MissingClaim(name.into()))
        );
        for bad in [
            json!(format!("{}", NOW + 60)),
            json!(true),
            json!(null),
            json!(NOW as f64 + 0.5),
            json!(-1),
            json!((1u64 << 40) + 1),
            json!(u64::MAX),
            json!(1e300),
            json!([NOW]),
        ] {
            assert_eq!(
                env.verify(&rsa_token(&with(claims(), name, bad.clone()))),
                Err(TokenError::BadClaimType(name.into())),
                "{name} {bad}"
            );
        }
    }
    // Integer-valued numbers written with a fraction or exponent are integers.
    let token = rsa_token(&with(claims(), "exp", json!((NOW + 60) as f64)));
    assert_eq!(env.verify(&token).unwrap().exp, NOW + 60);
    let payload = claims()
        .to_string()
        .replace(&format!("\"iat\":{}", NOW - 10), "\"iat\":1.79999999e9");
    assert!(payload.contains("1.79999999e9"));
    let token = sign_raw(
        &header("RS256", Some("rsa")).to_string(),
        &payload,
        &RSA,
        "RS256",
    );
    assert_eq!(env.verify(&token).unwrap().iat, 1_799_999_990);
}

#[test]
fn expiry_with_clock_skew() {
    let env = rsa_env();
    let exp = NOW + 600;
    let token = rsa_token(&claims());
    assert!(env.verify_at(&token, exp - 1).is_ok());
    assert!(env.verify_at(&token, exp).is_ok(), "inside the 30 s skew");
    assert!(env.verify_at(&token, exp + 29).is_ok());
    assert_eq!(env.verify_at(&token, exp + 30), Err(TokenError::Expired));
    assert_eq!(env.verify_at(&token, u64::MAX), Err(TokenError::Expired));
}

#[test]
fn nbf_with_clock_skew() {
    let env = rsa_env();
    let token = rsa_token(&with(claims(), "nbf", json!(NOW + 30)));
    assert!(env.verify(&token).is_ok());
    let token = rsa_token(&with(claims(), "nbf", json!(NOW + 31)));
    assert_eq!(env.verify(&token), Err(TokenError::NotYetValid));
    for bad in [json!("soon"), json!(1.5), json!(-5)] {
        assert_eq!(
            env.verify(&rsa_token(&with(claims(), "nbf", bad))),
            Err(TokenError::BadClaimType("nbf".into()))
        );
    }
}

#[test]
fn iat_in_the_future_beyond_skew_is_refused() {
    let env = rsa_env();
    let at = |iat: u64| {
        rsa_token(&with(
            with(claims(), "iat", json!(iat)),
            "exp",
            json!(iat + 600),
        ))
    };
    assert!(env.verify(&at(NOW + 30)).is_ok());
    assert_eq!(env.verify(&at(NOW + 31)), Err(TokenError::IatInFuture));
}

#[test]
fn lifetime_above_the_maximum_is_refused() {
    let env = rsa_env();
    let iat = NOW - 10;
    let ok = with(claims(), "exp", json!(iat + 3600));
    assert!(env.verify(&rsa_token(&ok)).is_ok());
    let long = with(claims(), "exp", json!(iat + 3601));
    assert_eq!(
        env.verify(&rsa_token(&long)),
        Err(TokenError::LifetimeTooLong)
    );
}

#[test]
fn auth_time_is_optional_and_numeric() {
    let env = rsa_env();
    assert_eq!(
        env.verify(&rsa_token(&without(claims(), "auth_time")))
            .unwrap()
            .auth_time,
        None
    );
    assert_eq!(
        env.verify(&rsa_token(&with(claims(), "auth_time", json!("yesterday")))),
        Err(TokenError::BadClaimType("auth_time".into()))
    );
}

#[test]
fn subject_rules() {
    let env = rsa_env();
    assert_eq!(
        env.verify(&rsa_token(&without(claims(), "sub")))
            .unwrap()
            .subject,
        None
    );
    assert_eq!(
        env.verify(&rsa_token(&with(claims(), "sub", json!(""))))
            .unwrap()
            .subject,
        Some(String::new())
    );
    for bad in [json!(42), json!(["a"]), json!(null)] {
        assert_eq!(
            env.verify(&rsa_token(&with(claims(), "sub", bad))),
            Err(TokenError::BadClaimType("sub".into()))
        );
    }
}

#[test]
fn roles_amr_and_session() {
    let env = rsa_env();
    let v = env
        .verify(&rsa_token(&with(
            claims(),
            "roles",
            json!(" clinician  nurse "),
        )))
        .unwrap();
    assert_eq!(v.roles, vec!["clinician", "nurse"]);
    let v = env
        .verify(&rsa_token(&without(
            without(without(claims(), "roles"), "amr"),
            "sid",
        )))
        .unwrap();
    assert!(v.roles.is_empty() && v.amr.is_empty());
    assert_eq!(v.session, None);
    for (name, bad) in [
        ("roles", json!(["clinician", 1])),
        ("roles", json!({"clinician": true})),
        ("roles", json!(7)),
        ("amr", json!([true])),
        ("amr", json!(1)),
        ("sid", json!(12)),
        ("sid", json!(["s"])),
    ] {
        assert_eq!(
            env.verify(&rsa_token(&with(claims(), name, bad))),
            Err(TokenError::BadClaimType(name.into())),
            "{name}"
        );
    }
}

#[test]
fn claim_names_come_from_the_policy() {
    let env = rsa_env().with_identity(json!({
        "subjectClaim": "preferred_username",
        "rolesClaim": "groups",
        "session": {"sessionClaim": "session_state"},
    }));
    let c = json!({
        "iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 60, "sub": "ignored",
        "preferred_username": "nurse.joy", "groups": ["nurse"], "session_state": "abc",
    });
    let v = env.verify(&rsa_token(&c)).unwrap();
    assert_eq!(v.subject.as_deref(), Some("nurse.joy"));
    assert_eq!(v.roles, vec!["nurse"]);
    assert_eq!(v.session.as_deref(), Some("abc"));
    assert_eq!(
        env.verify(&rsa_token(&with(c, "groups", json!(1)))),
        Err(TokenError::BadClaimType("groups".into()))
    );
}

#[test]
fn error_texts_never_carry_the_token_or_claim_values() {
    let env = rsa_env();
    let secret = "SECRET-PHI-VALUE";
    let mut errors = Vec::new();
    for (name, value) in [
        ("aud", json!(secret)),
        ("aud", json!(7)),
        ("iss", json!(secret)),
        ("exp", json!(secret)),
        ("sub", json!([secret])),
        ("roles", json!({ "k": secret })),
    ] {
        let token = rsa_token(&with(claims(), name, value));
        let err = env.verify(&token).unwrap_err();
        errors.push((token, err));
    }
    let head = b64(json!({"alg": secret}).to_string().as_bytes());
    let token = format!("{head}.{}.AAAA", b64(claims().to_string().as_bytes()));
    let err = env.verify(&token).unwrap_err();
    errors.push((token, err));
    for (token, err) in errors {
        let text = err.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&token[..20]), "{text}");
    }
}

#[test]
fn codes_are_distinct_snake_case() {
    let all = [
        TokenError::Malformed,
        TokenError::TooLarge,
        TokenError::DuplicateMember,
        TokenError::AlgNotAllowed,
        TokenError::HeaderKeyRefused("jwk"),
        TokenError::CritUnsupported,
        TokenError::ZipUnsupported,
        TokenError::JweUnsupported,
        TokenError::UnknownIssuer,
        TokenError::KeysNotLoaded,
        TokenError::UnknownKid,
        TokenError::KeyNotUsable,
        TokenError::KeyAlgMismatch,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IatInFuture,
        TokenError::WrongAudience,
        TokenError::LifetimeTooLong,
        TokenError::MissingClaim("exp".into()),
        TokenError::BadClaimType("exp".into()),
    ];
    let codes: std::collections::BTreeSet<&str> = all.iter().map(TokenError::code).collect();
    assert_eq!(codes.len(), all.len());
    for code in codes {
        assert!(
            code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{code}"
        );
    }
}

// ------------------------------------------------------------------ JWKS loading

fn load(keys: Vec<Value>) -> Result<KeySet, JwksError> {
    KeySet::from_jwks_json(&jwks(keys), &all_algs())
}

fn key_problem(keys: Vec<Value>) -> (usize, Option<String>, KeyProblem) {
    match load(keys) {
        Err(JwksError::Key { key, problem }) => (key.index, key.kid, problem),
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn jwks_must_be_a_strict_object_with_keys() {
    let good = jwk(&RSA, Some("a"), None);
    for text in [
        "".to_string(),
        "nope".to_string(),
        "[]".to_string(),
        "{}".to_string(),
        r#"{"keys": {}}"#.to_string(),
        r#"{"keys": "x"}"#.to_string(),
        format!(r#"{{"keys": [{good}], "keys": []}}"#),
        format!(
            r#"{{"keys": [{{"kty":"RSA","kty":"EC",{}}}]}}"#,
            &good.to_string()[1..good.to_string().len() - 1]
        ),
    ] {
        assert!(
            matches!(
                KeySet::from_jwks_json(&text, &all_algs()),
                Err(JwksError::Malformed(_))
            ),
            "{text}"
        );
    }
    let huge = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(MAX_JWKS_BYTES));
    assert_eq!(
        KeySet::from_jwks_json(&huge, &all_algs()).unwrap_err(),
        JwksError::TooLarge
    );
    assert!(matches!(load(vec![]), Err(JwksError::NoUsableKeys { .. })));
    let set = load(vec![
        good,
        jwk(&P256, Some("b"), None),
        jwk(&ED, None, None),
    ])
    .unwrap();
    assert_eq!(set.len(), 3);
    assert!(!set.is_empty());
}

#[test]
fn jwks_key_shape_rules() {
    assert_eq!(key_problem(vec![json!("RSA")]).2, KeyProblem::NotAnObject);
    assert_eq!(
        key_problem(vec![json!({"n": "AQAB"})]).2,
        KeyProblem::Missing("kty")
    );
    assert_eq!(
        key_problem(vec![with(jwk(&RSA, None, None), "kid", json!(1))]).2,
        KeyProblem::NotAString("kid")
    );
    assert_eq!(
        key_problem(vec![with(jwk(&RSA, None, None), "alg", json!(["RS256"]))]).2,
        KeyProblem::NotAString("alg")
    );
    assert_eq!(
        key_problem(vec![without(jwk(&RSA, None, None), "n")]).2,
        KeyProblem::Missing("n")
    );
    assert_eq!(
        key_problem(vec![with(jwk(&RSA, None, None), "e", json!("AQAB="))]).2,
        KeyProblem::NotBase64Url("e")
    );
    assert_eq!(
        key_problem(vec![with(jwk(&P256, None, None), "x", json!("a+b/"))]).2,
        KeyProblem::NotBase64Url("x")
    );
}

#[test]
fn jwks_refuses_use_other_than_sig_and_skips_enc() {
    assert_eq!(
        key_problem(vec![with(jwk(&RSA, Some("a"), None), "use", json!("tls"))]).2,
        KeyProblem::BadUse("tls".into())
    );
    assert_eq!(
        key_problem(vec![with(jwk(&RSA, Some("a"), None), "use", json!(1))]).2,
        KeyProblem::NotAString("use")
    );
    let set = load(vec![
        with(jwk(&RSA, Some("a"), None), "use", json!("sig")),
        with(jwk(&RSA_ROGUE, Some("b"), None), "use", json!("enc")),
    ])
    .unwrap();
    assert_eq!(set.len(), 1);
    assert!(matches!(
        load(vec![with(jwk(&RSA, Some("a"), None), "use", json!("enc"))]),
        Err(JwksError::NoUsableKeys { .. })
    ));
    // key_ops without "verify": not usable; malformed key_ops: an error.
    assert!(matches!(
        load(vec![with(
            jwk(&RSA, Some("a"), None),
            "key_ops",
            json!(["encrypt"])
        )]),
        Err(JwksError::NoUsableKeys { .. })
    ));
    assert_eq!(
        load(vec![with(
            jwk(&RSA, None, None),
            "key_ops",
            json!(["verify"])
        )])
        .unwrap()
        .len(),
        1
    );
    assert_eq!(
        key_problem(vec![with(
            jwk(&RSA, None, None),
            "key_ops",
            json!("verify")
        )])
        .2,
        KeyProblem::BadKeyOps
    );
}

#[test]
fn jwks_refuses_private_and_symmetric_keys() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        assert_eq!(
            key_problem(vec![with(
                jwk(&RSA, Some("a"), None),
                member,
                json!("AQAB")
            )])
            .2,
            KeyProblem::PrivateKey(member)
        );
    }
    assert_eq!(
        key_problem(vec![with(jwk(&P256, None, None), "d", json!("AQAB"))]).2,
        KeyProblem::PrivateKey("d")
    );
    assert_eq!(
        key_problem(vec![json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})]).2,
        KeyProblem::Symmetric
    );
}

#[test]
fn jwks_refuses_hmac_and_none_labels_and_mismatched_algs() {
    for alg in ["HS256", "hs512", "none", "NONE"] {
        assert_eq!(
            key_problem(vec![jwk(&RSA, Some("a"), Some(alg))]).2,
            KeyProblem::ForbiddenAlg(alg.into())
        );
    }
    assert_eq!(
        key_problem(vec![jwk(&RSA, Some("a"), Some("ES256"))]).2,
        KeyProblem::AlgKtyMismatch {
            alg: "ES256",
            kty: "RSA".into()
        }
    );
    assert_eq!(
        key_problem(vec![jwk(&P256, Some("a"), Some("RS256"))]).2,
        KeyProblem::AlgKtyMismatch {
            alg: "RS256",
            kty: "EC".into()
        }
    );
    assert_eq!(
        key_problem(vec![jwk(&ED, Some("a"), Some("ES256"))]).2,
        KeyProblem::AlgKtyMismatch {
            alg: "ES256",
            kty: "OKP".into()
        }
    );
    assert_eq!(
        key_problem(vec![jwk(&P256, Some("a"), Some("ES384"))]).2,
        KeyProblem::WrongCurve {
            alg: "ES384",
            crv: "P-256".into(),
            needs: "P-384"
        }
    );
    assert_eq!(
        key_problem(vec![jwk(&P384, Some("a"), Some("ES256"))]).2,
        KeyProblem::WrongCurve {
            alg: "ES256",
            crv: "P-384".into(),
            needs: "P-256"
        }
    );
}

#[test]
fn jwks_skips_keys_it_cannot_use() {
    // Each of these alone leaves no usable key; beside a good key, the set loads.
    let unusable = [
        jwk(&RSA, Some("u1"), Some("RSA-OAEP")),
        jwk(&RSA, Some("u2"), Some("ES512")),
        json!({"kty": "EC", "crv": "P-521", "x": "AQAB", "y": "AQAB", "kid": "u3"}),
        json!({"kty": "OKP", "crv": "X25519", "x": "AQAB", "kid": "u4"}),
        json!({"kty": "OKP", "crv": "Ed448", "x": "AQAB", "kid": "u5"}),
        json!({"kty": "PQC", "kid": "u6"}),
    ];
    for key in unusable.clone() {
        assert!(
            matches!(load(vec![key.clone()]), Err(JwksError::NoUsableKeys { .. })),
            "{key}"
        );
    }
    let mut keys = unusable.to_vec();
    keys.push(jwk(&ED, Some("good"), None));
    assert_eq!(load(keys).unwrap().len(), 1);
    // Keys whose algorithm is outside the allow-list are unusable for this provider.
    let es_only = algs(&["ES256"]);
    let text = jwks(vec![
        jwk(&RSA, Some("r"), None),
        jwk(&P256, Some("e"), None),
    ]);
    assert_eq!(KeySet::from_jwks_json(&text, &es_only).unwrap().len(), 1);
    let text = jwks(vec![jwk(&RSA, Some("r"), Some("RS256"))]);
    assert_eq!(
        KeySet::from_jwks_json(&text, &es_only).unwrap_err(),
        JwksError::NoUsableKeys {
            allowed: "ES256".into()
        }
    );
}

fn rsa_with(n: Option<Vec<u8>>, e: Option<Vec<u8>>) -> Value {
    let mut key = jwk(&RSA, Some("r"), None);
    if let Some(n) = n {
        key["n"] = json!(b64(&n));
    }
    if let Some(e) = e {
        key["e"] = json!(b64(&e));
    }
    key
}

#[test]
fn jwks_rsa_bounds() {
    assert_eq!(
        key_problem(vec![jwk(&RSA_1024, Some("weak"), None)]),
        (0, Some("weak".into()), KeyProblem::RsaModulusSize(1024))
    );
    let mut n = vec![0xffu8; 8192 / 8 + 1];
    n[0] = 0x01;
    assert_eq!(
        key_problem(vec![rsa_with(Some(n), None)]).2,
        KeyProblem::RsaModulusSize(8193)
    );
    let mut n = vec![0xffu8; 256];
    n[255] = 0xfe;
    assert_eq!(
        key_problem(vec![rsa_with(Some(n), None)]).2,
        KeyProblem::RsaModulusEven
    );
    let mut n = vec![0x7fu8; 256];
    n[255] = 0xff;
    assert_eq!(
        key_problem(vec![rsa_with(Some(n), None)]).2,
        KeyProblem::RsaModulusSize(2047)
    );
    for e in [
        vec![1u8],
        vec![2],
        vec![0x01, 0x00, 0x02],
        vec![1; 9],
        vec![0x02, 0, 0, 0, 1],
    ] {
        assert_eq!(
            key_problem(vec![rsa_with(None, Some(e.clone()))]).2,
            KeyProblem::RsaExponent,
            "{e:?}"
        );
    }
    // e = 3 is allowed; leading zero bytes in n and e are tolerated.
    assert_eq!(load(vec![rsa_with(None, Some(vec![3]))]).unwrap().len(), 1);
    let public: Value = serde_json::from_str(RSA.jwk).unwrap();
    let mut n = vec![0u8];
    n.extend(
        URL_SAFE_NO_PAD
            .decode(public["n"].as_str().unwrap())
            .unwrap(),
    );
    let env = Env::new(vec![rsa_with(Some(n), Some(vec![0, 1, 0, 1]))], all_algs());
    assert!(env
        .verify(&sign(&RSA, "RS256", Some("r"), &claims()))
        .is_ok());
    // The 8192-bit fixture is within bounds.
    assert_eq!(load(vec![jwk(&RSA_8192, None, None)]).unwrap().len(), 1);
}

#[test]
fn jwks_ec_points_must_be_on_the_curve() {
    for fx in [&P256, &P384] {
        let mut key = jwk(fx, Some("e"), None);
        let mut y = URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap();
        let last = y.len() - 1;
        y[last] ^= 1;
        key["y"] = json!(b64(&y));
        let crv = if std::ptr::eq(fx, &P256) {
            "P-256"
        } else {
            "P-384"
        };
        assert_eq!(key_problem(vec![key]).2, KeyProblem::NotOnCurve(crv));
        // Coordinates of the wrong length (a P-256 x for P-384 and vice versa).
        let mut key = jwk(fx, Some("e"), None);
        key["x"] = json!(b64(&[1u8; 40]));
        assert!(matches!(
            key_problem(vec![key]).2,
            KeyProblem::CoordinateLength { member: "x", .. }
        ));
        let zeros = with(
            with(
                jwk(fx, None, None),
                "x",
                json!(b64(&vec![0u8; if crv == "P-256" { 32 } else { 48 }])),
            ),
            "y",
            json!(b64(&vec![0u8; if crv == "P-256" { 32 } else { 48 }])),
        );
        assert_eq!(key_problem(vec![zeros]).2, KeyProblem::NotOnCurve(crv));
    }
    assert_eq!(
        key_problem(vec![without(jwk(&P256, None, None), "crv")]).2,
        KeyProblem::Missing("crv")
    );
}

#[test]
fn jwks_ed25519_keys_are_checked() {
    assert!(matches!(
        key_problem(vec![with(
            jwk(&ED, None, None),
            "x",
            json!(b64(&[9u8; 31]))
        )])
        .2,
        KeyProblem::CoordinateLength {
            member: "x",
            bytes: 32,
            ..
        }
    ));
    // The identity point (y = 1) has small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        key_problem(vec![with(jwk(&ED, None, None), "x", json!(b64(&identity)))]).2,
        KeyProblem::WeakEd25519
    );
    // Some y has no x on the curve: such an encoding is not a point.
    let invalid = (2u8..=255)
        .map(|y| {
            let mut bytes = [0u8; 32];
            bytes[0] = y;
            bytes
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .unwrap();
    assert_eq!(
        key_problem(vec![with(jwk(&ED, None, None), "x", json!(b64(&invalid)))]).2,
        KeyProblem::InvalidEd25519
    );
}

#[test]
fn jwks_refuses_duplicate_kids_and_names_the_key() {
    let err = load(vec![
        jwk(&RSA, Some("a"), None),
        jwk(&P256, Some("b"), None),
        jwk(&ED, Some("a"), None),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        JwksError::Key {
            key: KeyRef {
                index: 2,
                kid: Some("a".into())
            },
            problem: KeyProblem::DuplicateKid
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("keys[2]") && text.contains("\"a\"") && text.contains("already used"),
        "{text}"
    );
    // A duplicate of a skipped key's kid is refused as well.
    let mut enc = jwk(&RSA_ROGUE, Some("a"), None);
    enc["use"] = json!("enc");
    assert!(matches!(
        load(vec![enc, jwk(&RSA, Some("a"), None)]),
        Err(JwksError::Key {
            problem: KeyProblem::DuplicateKid,
            ..
        })
    ));
    let text = load(vec![
        jwk(&RSA, None, None),
        jwk(&RSA_1024, Some("old"), None),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("keys[1] (kid \"old\")") && text.contains("1024 bits"),
        "{text}"
    );
}

#[test]
fn keysets_clone_and_debug_without_key_bytes() {
    let set = load(vec![jwk(&RSA, Some("a"), None)]).unwrap();
    let copy = set.clone();
    assert_eq!(copy.len(), 1);
    assert!(format!("{set:?}").contains("redacted"));
}
