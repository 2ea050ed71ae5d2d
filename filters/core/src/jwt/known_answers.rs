//! Known-answer tests: the published signed examples of RFC 7515 (appendix A), RFC 7520
//! (section 4) and RFC 8037 (appendix A.4), byte for byte, through core's verifier.
//!
//! - Every example whose algorithm hipaa-mesh implements (RS256, PS384, ES256, EdDSA) verifies
//!   when the allow-list has its algorithm, and is refused when it does not.
//! - Every one-bit change of such an example (of the token text, and of the decoded header,
//!   payload and signature octets) is refused.
//! - The examples whose algorithm is never accepted (HS256, ES512) are refused, and their keys
//!   (`oct`, P-521) are refused or skipped at load.
//!
//! The examples are not JWTs hipaa-mesh would accept (no `aud`/`iat`, and RFC 7520 and 8037
//! sign plain text), so the signature is checked through `verify_signature`: the same
//! compact-form and header rules, key selection and signature check as `verify_token`. The
//! RFC 7515 examples, whose payload is a JSON object, also go through `verify_token` with the
//! clock injected before their `exp`: the pipeline gets past the signature and stops at the
//! first claim rule they do not meet (no `iat`).

use super::verify::verify_signature;
use super::*;
use crate::policy::schema::{Algorithm, Identity};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

// ---------------------------------------------------------------- RFC 7515, appendix A

/// A.1-A.3 sign the same payload (the JSON below, with CR LF line breaks).
const RFC7515_PAYLOAD: &[u8] =
    b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
const RFC7515_EXP: u64 = 1_300_819_380;

/// A.1: HMAC SHA-256.
const RFC7515_A1_OCT_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const RFC7515_A1_HS256: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A.2: RSASSA-PKCS1-v1_5 SHA-256; the public part of the A.2 key.
const RFC7515_A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const RFC7515_A2_E: &str = "AQAB";
const RFC7515_A2_RS256: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/// A.3: ECDSA P-256 SHA-256; the public part of the A.3 key.
const RFC7515_A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const RFC7515_A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const RFC7515_A3_ES256: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/// A.4: ECDSA P-521 SHA-512 over the payload "Payload"; the public part of the A.4 key.
const RFC7515_A4_X: &str =
    "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk";
const RFC7515_A4_Y: &str =
    "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2";
const RFC7515_A4_ES512: &str = "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn";

// ---------------------------------------------------------------- RFC 7520, section 4

/// Figure 7: the payload of every RFC 7520 signature example (U+2019 apostrophes).
const RFC7520_PAYLOAD: &str = "It\u{2019}s a dangerous business, Frodo, going out your door. You step onto the road, and if you don't keep your feet, there\u{2019}s no knowing where you might be swept off to.";
const RFC7520_KID: &str = "bilbo.baggins@hobbiton.example";
/// Figure 3: the public part of the RSA key of 4.1 and 4.2.
const RFC7520_RSA_N: &str = "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";
/// 4.1: RSA v1.5 signature (compact serialization).
const RFC7520_4_1_RS256: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg";
/// 4.2: RSA-PSS signature (compact serialization).
const RFC7520_4_2_PS384: &str = "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw";
/// Figure 2: the public part of the P-521 key of 4.3.
const RFC7520_EC_X: &str =
    "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt";
const RFC7520_EC_Y: &str =
    "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1";
/// 4.3: ECDSA signature (compact serialization).
const RFC7520_4_3_ES512: &str = "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2";
/// Figure 5: the symmetric key of 4.4.
const RFC7520_OCT_KID: &str = "018c0ae5-4d9b-471b-bfd6-eef314bc7037";
const RFC7520_OCT_K: &str = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";
/// 4.4: HMAC-SHA2 integrity protection (compact serialization).
const RFC7520_4_4_HS256: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";

// ---------------------------------------------------------------- RFC 8037, appendix A

/// A.2: the public part of the A.1 Ed25519 key.
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// A.4: Ed25519 signing of "Example of Ed25519 signing".
const RFC8037_A4_EDDSA: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

// ---------------------------------------------------------------- helpers

fn algs(names: &[&str]) -> Vec<Algorithm> {
    names
        .iter()
        .map(|n| Algorithm::from_name(n).unwrap())
        .collect()
}

fn keyset(keys: Vec<Value>, allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
    KeySet::from_jwks_json(&json!({ "keys": keys }).to_string(), allowed)
}

fn rfc7515_rsa() -> Value {
    json!({"kty": "RSA", "n": RFC7515_A2_N, "e": RFC7515_A2_E})
}

fn rfc7515_p256() -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": RFC7515_A3_Y})
}

fn rfc7520_rsa() -> Value {
    json!({"kty": "RSA", "kid": RFC7520_KID, "use": "sig", "n": RFC7520_RSA_N, "e": "AQAB"})
}

fn rfc8037_ed25519() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})
}

/// Every token one bit away from `token`: each bit of the text that keeps it ASCII, and each
/// bit of the decoded header, payload and signature octets, re-encoded.
fn one_bit_changes(token: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        for bit in 0..7 {
            let mut changed = bytes.to_vec();
            changed[i] ^= 1 << bit;
            out.push(String::from_utf8(changed).unwrap());
        }
    }
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    for s in 0..3 {
        let decoded = URL_SAFE_NO_PAD.decode(segments[s]).unwrap();
        for i in 0..decoded.len() {
            for bit in 0..8 {
                let mut changed = decoded.clone();
                changed[i] ^= 1 << bit;
                let mut parts: Vec<String> = segments.iter().map(|p| p.to_string()).collect();
                parts[s] = URL_SAFE_NO_PAD.encode(&changed);
                out.push(parts.join("."));
            }
        }
    }
    out
}

/// The genuine example verifies and yields its payload; no one-bit change of it does.
fn genuine_and_every_bit_flip(token: &str, keys: &KeySet, allowed: &[Algorithm], payload: &[u8]) {
    assert_eq!(
        verify_signature(token, keys, allowed).as_deref(),
        Ok(payload),
        "genuine example refused"
    );
    let changes = one_bit_changes(token);
    assert!(changes.len() > 1000);
    for changed in &changes {
        assert_ne!(changed, token);
        assert!(
            verify_signature(changed, keys, allowed).is_err(),
            "one-bit change accepted: {changed}"
        );
    }
}

/// An identity whose one provider is the RFC 7515 examples' issuer, `joe`.
fn joe(allowed: &[&str]) -> Identity {
    serde_json::from_value(json!({"providers": [{
        "name": "rfc7515", "issuer": "joe", "audiences": ["ehr-api"],
        "jwks": {"cluster": "idp", "path": "/jwks"},
        "algorithms": allowed, "clockSkewSeconds": 0, "maxTokenLifetimeSeconds": 3600,
    }]}))
    .unwrap()
}

fn verify_as_jwt(token: &str, identity: &Identity, keys: &KeySet, now: u64) -> TokenError {
    let providers = [ProviderKeys {
        provider: &identity.providers[0],
        keys: Some(keys),
    }];
    verify_token(token, identity, &providers, now).unwrap_err()
}

// ---------------------------------------------------------------- RFC 7515

#[test]
fn rfc7515_a2_rs256_verifies_and_every_bit_flip_is_refused() {
    let rs256 = algs(&["RS256"]);
    let keys = keyset(vec![rfc7515_rsa()], &rs256).unwrap();
    genuine_and_every_bit_flip(RFC7515_A2_RS256, &keys, &rs256, RFC7515_PAYLOAD);
}

#[test]
fn rfc7515_a3_es256_verifies_and_every_bit_flip_is_refused() {
    let es256 = algs(&["ES256"]);
    let keys = keyset(vec![rfc7515_p256()], &es256).unwrap();
    genuine_and_every_bit_flip(RFC7515_A3_ES256, &keys, &es256, RFC7515_PAYLOAD);
}

#[test]
fn rfc7515_examples_pass_the_signature_step_of_the_token_pipeline() {
    // The clock is injected before the examples' `exp` (2011). The signature holds, and the
    // pipeline stops at the first claim rule the examples do not meet: they have no `iat`.
    let now = RFC7515_EXP - 60;
    for (token, key, alg) in [
        (RFC7515_A2_RS256, rfc7515_rsa(), "RS256"),
        (RFC7515_A3_ES256, rfc7515_p256(), "ES256"),
    ] {
        let identity = joe(&[alg]);
        let keys = keyset(vec![key], &algs(&[alg])).unwrap();
        assert_eq!(
            verify_as_jwt(token, &identity, &keys, now),
            TokenError::MissingClaim("iat".into()),
            "{alg}"
        );
        // One character in the middle of the signature changed: refused at the signature,
        // before any claim is looked at.
        let mut bad: Vec<char> = token.chars().collect();
        let at = bad.len() - 20;
        bad[at] = if bad[at] == 'A' { 'B' } else { 'A' };
        let bad: String = bad.into_iter().collect();
        assert_eq!(
            verify_as_jwt(&bad, &identity, &keys, now),
            TokenError::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn rfc7515_examples_are_refused_when_the_policy_does_not_allow_their_algorithm() {
    // RS256 example, RSA key loaded for PS256 only (a key without `alg` binds to the allowed
    // RSA algorithms).
    let ps256 = algs(&["PS256"]);
    let keys = keyset(vec![rfc7515_rsa()], &ps256).unwrap();
    assert_eq!(
        verify_signature(RFC7515_A2_RS256, &keys, &ps256),
        Err(TokenError::AlgNotAllowed)
    );
    // The same through the token pipeline: the provider does not allow RS256.
    assert_eq!(
        verify_as_jwt(RFC7515_A2_RS256, &joe(&["PS256"]), &keys, RFC7515_EXP - 60),
        TokenError::AlgNotAllowed
    );
    // ES256 example with only RSA allowed: the P-256 key is skipped at load.
    assert!(matches!(
        keyset(vec![rfc7515_p256()], &algs(&["RS256"])),
        Err(JwksError::NoUsableKeys { .. })
    ));
    let rsa_keys = keyset(vec![rfc7515_rsa()], &algs(&["RS256"])).unwrap();
    assert_eq!(
        verify_signature(RFC7515_A3_ES256, &rsa_keys, &algs(&["RS256"])),
        Err(TokenError::AlgNotAllowed)
    );
    // Allowed by the policy, but the only key is bound to another algorithm.
    let both = algs(&["RS256", "ES256"]);
    assert_eq!(
        verify_signature(RFC7515_A3_ES256, &rsa_keys, &both),
        Err(TokenError::KeyAlgMismatch)
    );
}

#[test]
fn rfc7515_a1_hs256_and_a4_es512_are_refused() {
    let every = Algorithm::ALL.to_vec();
    // A.1: the symmetric key cannot be loaded, and HS256 is no algorithm here.
    assert!(matches!(
        keyset(vec![json!({"kty": "oct", "k": RFC7515_A1_OCT_K})], &every),
        Err(JwksError::Key {
            problem: KeyProblem::Symmetric,
            ..
        })
    ));
    let keys = keyset(vec![rfc7515_rsa()], &every).unwrap();
    assert_eq!(
        verify_signature(RFC7515_A1_HS256, &keys, &every),
        Err(TokenError::AlgNotAllowed)
    );
    // A.4: P-521 is not implemented, so its key is skipped and ES512 is no algorithm here.
    let p521 = json!({"kty": "EC", "crv": "P-521", "x": RFC7515_A4_X, "y": RFC7515_A4_Y});
    assert!(matches!(
        keyset(vec![p521.clone()], &every),
        Err(JwksError::NoUsableKeys { .. })
    ));
    let keys = keyset(vec![p521, rfc7515_rsa()], &every).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        verify_signature(RFC7515_A4_ES512, &keys, &every),
        Err(TokenError::AlgNotAllowed)
    );
}

// ---------------------------------------------------------------- RFC 7520

#[test]
fn rfc7520_4_1_rs256_verifies_and_every_bit_flip_is_refused() {
    let rs256 = algs(&["RS256"]);
    let keys = keyset(vec![rfc7520_rsa()], &rs256).unwrap();
    genuine_and_every_bit_flip(RFC7520_4_1_RS256, &keys, &rs256, RFC7520_PAYLOAD.as_bytes());
}

#[test]
fn rfc7520_4_2_ps384_verifies_and_every_bit_flip_is_refused() {
    let ps384 = algs(&["PS384"]);
    let keys = keyset(vec![rfc7520_rsa()], &ps384).unwrap();
    genuine_and_every_bit_flip(RFC7520_4_2_PS384, &keys, &ps384, RFC7520_PAYLOAD.as_bytes());
}

#[test]
fn rfc7520_examples_need_their_algorithm_allowed_and_bound() {
    // The key without `alg`, allowed for RS256 only: the PS384 example is refused.
    let rs256 = algs(&["RS256"]);
    let keys = keyset(vec![rfc7520_rsa()], &rs256).unwrap();
    assert_eq!(
        verify_signature(RFC7520_4_2_PS384, &keys, &rs256),
        Err(TokenError::AlgNotAllowed)
    );
    // The key declared `alg: RS256` while the policy allows both: the PS384 example names the
    // key by `kid`, and the key is not bound to PS384.
    let both = algs(&["RS256", "PS384"]);
    let mut bound = rfc7520_rsa();
    bound["alg"] = json!("RS256");
    let keys = keyset(vec![bound], &both).unwrap();
    assert_eq!(
        verify_signature(RFC7520_4_2_PS384, &keys, &both),
        Err(TokenError::KeyAlgMismatch)
    );
    assert_eq!(
        verify_signature(RFC7520_4_1_RS256, &keys, &both).as_deref(),
        Ok(RFC7520_PAYLOAD.as_bytes())
    );
    // Another key under the same `kid` (the RFC 7515 one): the signature does not verify.
    let mut other = rfc7515_rsa();
    other["kid"] = json!(RFC7520_KID);
    let keys = keyset(vec![other], &both).unwrap();
    assert_eq!(
        verify_signature(RFC7520_4_1_RS256, &keys, &both),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn rfc7520_4_3_es512_and_4_4_hs256_are_refused() {
    let every = Algorithm::ALL.to_vec();
    let p521 = json!({"kty": "EC", "kid": RFC7520_KID, "use": "sig", "crv": "P-521",
                      "x": RFC7520_EC_X, "y": RFC7520_EC_Y});
    assert!(matches!(
        keyset(vec![p521], &every),
        Err(JwksError::NoUsableKeys { .. })
    ));
    let oct = json!({"kty": "oct", "kid": RFC7520_OCT_KID, "use": "sig", "alg": "HS256",
                     "k": RFC7520_OCT_K});
    assert!(matches!(
        keyset(vec![oct, rfc7520_rsa()], &every),
        Err(JwksError::Key {
            problem: KeyProblem::Symmetric,
            ..
        })
    ));
    let keys = keyset(vec![rfc7520_rsa()], &every).unwrap();
    for token in [RFC7520_4_3_ES512, RFC7520_4_4_HS256] {
        assert_eq!(
            verify_signature(token, &keys, &every),
            Err(TokenError::AlgNotAllowed)
        );
    }
}

// ---------------------------------------------------------------- RFC 8037

#[test]
fn rfc8037_a4_eddsa_verifies_and_every_bit_flip_is_refused() {
    let eddsa = algs(&["EdDSA"]);
    let keys = keyset(vec![rfc8037_ed25519()], &eddsa).unwrap();
    genuine_and_every_bit_flip(
        RFC8037_A4_EDDSA,
        &keys,
        &eddsa,
        b"Example of Ed25519 signing",
    );
}

#[test]
fn rfc8037_a4_is_refused_without_eddsa_allowed() {
    // An Ed25519 key with EdDSA outside the allow-list is skipped at load.
    assert!(matches!(
        keyset(vec![rfc8037_ed25519()], &algs(&["ES256"])),
        Err(JwksError::NoUsableKeys { .. })
    ));
    let keys = keyset(vec![rfc8037_ed25519(), rfc7515_p256()], &Algorithm::ALL).unwrap();
    assert_eq!(
        verify_signature(RFC8037_A4_EDDSA, &keys, &algs(&["ES256"])),
        Err(TokenError::AlgNotAllowed)
    );
}
