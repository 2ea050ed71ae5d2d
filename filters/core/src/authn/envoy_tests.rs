//! `verification: envoy`: every branch of the proof check and of `decide` in that mode.

use super::*;
use crate::jwt::envoy::{check, EnvoyPayload, PAYLOAD_KEY};
use crate::policy::Policy;
use crate::test_support::{
    clinician_claims as claims, ed25519_jwks as jwks, eddsa_token as token_by, MemSessions, ISS,
    NOW,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

const WASM_ISS: &str = "https://wasm-idp.example";

/// One envoy-mode provider (its JWKS remote: authn never fetches it) and one wasm-mode one.
fn policy_with(extra: impl FnOnce(&mut Value)) -> Policy {
    let mut spec = json!({
        "identity": {
            "providers": [
                {"name": "idp", "issuer": ISS, "audiences": ["ehr"], "verification": "envoy",
                 "jwks": {"cluster": "idp", "path": "/jwks"}, "algorithms": ["EdDSA", "RS256"]},
                {"name": "wasm-idp", "issuer": WASM_ISS, "audiences": ["ehr"],
                 "jwks": {"inline": jwks(7)}, "algorithms": ["EdDSA"]}
            ],
            "sharedAccounts": {"denySubjects": ["shared"]},
            "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "allowRoles": ["nurse", "clinician"]},
            {"name": "billing", "match": {"pathPrefix": "/billing"}, "phi": true, "allowRoles": ["billing"]}
        ]
    });
    extra(&mut spec);
    Policy::from_spec_value(spec).unwrap()
}

/// Signed with key 9: authn never checks it in envoy mode, so any key will do — which is
/// exactly why the proof is required.
fn token(claims: &Value) -> String {
    token_by(9, claims)
}

/// What Envoy 1.40 returns for a verified payload (strings as bytes, numbers as LE doubles).
fn payload_of(claims: &Value) -> EnvoyPayload {
    let num = |v: &Value| v.as_f64().map(|f| f.to_le_bytes().to_vec());
    EnvoyPayload {
        iss: claims["iss"].as_str().unwrap().as_bytes().to_vec(),
        subject: claims["sub"].as_str().map(|s| s.as_bytes().to_vec()),
        exp: num(&claims["exp"]),
        iat: num(&claims["iat"]),
    }
}

struct Harness {
    policy: Policy,
    auth: Authenticator,
    sessions: MemSessions,
}

impl Harness {
    fn new(policy: Policy) -> Harness {
        Harness {
            auth: Authenticator::new(&policy),
            policy,
            sessions: MemSessions::default(),
        }
    }

    fn run(&mut self, path: &str, token: &str, payload: Option<EnvoyPayload>, now: u64) -> Verdict {
        self.request(path, token, payload, None, now)
    }

    fn request(
        &mut self,
        path: &str,
        token: &str,
        payload: Option<EnvoyPayload>,
        break_glass: Option<&str>,
        now: u64,
    ) -> Verdict {
        let facts = RequestFacts {
            method: "GET".into(),
            path: path.into(),
            authorization: vec![format!("Bearer {token}")],
            break_glass: break_glass.map(String::from),
            envoy_payload: payload,
            ..RequestFacts::default()
        };
        decide(
            &facts,
            &self.policy,
            &mut self.auth,
            &mut self.sessions,
            now,
        )
    }

    /// A request whose token Envoy verified (the payload is the token's own).
    fn verified(&mut self, claims: &Value) -> Verdict {
        self.run(
            "/fhir/Patient/1",
            &token(claims),
            Some(payload_of(claims)),
            NOW,
        )
    }
}

fn reason(v: &Verdict) -> Option<&'static str> {
    v.denial.as_ref().map(Denial::reason)
}

// ---------------------------------------------------------------- reading the metadata

#[test]
fn read_makes_no_host_call_without_an_envoy_mode_provider() {
    let policy = policy_with(|s| {
        s["identity"]["providers"][0]["verification"] = json!("wasm");
    });
    let mut calls = 0;
    let got = EnvoyPayload::read(&policy.spec.identity, |_, _| {
        calls += 1;
        Some(b"x".to_vec())
    });
    assert_eq!(got, None);
    assert_eq!(calls, 0);
}

#[test]
fn read_takes_the_payload_key_then_each_envoy_issuer() {
    let policy = policy_with(|s| s["identity"]["subjectClaim"] = json!("preferred_username"));
    let identity = &policy.spec.identity;
    // Under `payload` (hipaa-mesh's rendering and Istio's today).
    let mut asked = Vec::new();
    let got = EnvoyPayload::read(identity, |key, claim| {
        asked.push(format!("{key}/{claim}"));
        (key == PAYLOAD_KEY).then(|| format!("{claim}-value").into_bytes())
    })
    .unwrap();
    assert_eq!(got.iss, b"iss-value");
    assert_eq!(
        got.subject.as_deref(),
        Some(&b"preferred_username-value"[..])
    );
    assert_eq!(got.exp.as_deref(), Some(&b"exp-value"[..]));
    assert_eq!(got.iat.as_deref(), Some(&b"iat-value"[..]));
    assert_eq!(
        asked,
        [
            "payload/iss",
            "payload/preferred_username",
            "payload/exp",
            "payload/iat"
        ]
    );
    // Under the issuer (older Istio); the wasm-mode provider's issuer is never asked for.
    let mut asked = Vec::new();
    let got = EnvoyPayload::read(identity, |key, claim| {
        asked.push(format!("{key}/{claim}"));
        (key == ISS).then(|| claim.as_bytes().to_vec())
    })
    .unwrap();
    assert_eq!(got.iss, b"iss");
    assert_eq!(
        asked[..2],
        ["payload/iss".to_string(), format!("{ISS}/iss")]
    );
    // Nothing verified: None, after asking each key for `iss` once.
    let mut asked = Vec::new();
    let got = EnvoyPayload::read(identity, |key, claim| {
        asked.push(format!("{key}/{claim}"));
        None
    });
    assert_eq!(got, None);
    assert_eq!(asked, ["payload/iss".to_string(), format!("{ISS}/iss")]);
}

// ---------------------------------------------------------------- the proof itself

fn verified_token() -> crate::jwt::VerifiedToken {
    crate::jwt::VerifiedToken {
        provider: 0,
        issuer: ISS.into(),
        subject: Some("alice".into()),
        roles: vec![],
        amr: vec![],
        session: None,
        auth_time: None,
        iat: NOW - 60,
        exp: NOW + 600,
        key: None,
    }
}

#[test]
fn check_requires_a_payload_naming_the_same_iss_sub_exp_iat() {
    let t = verified_token();
    let good = payload_of(&claims());
    assert_eq!(check(Some(&good), &t), Ok(()));
    assert_eq!(check(None, &t), Err(TokenError::UnverifiedByEnvoy));
    let mismatch = |edit: &dyn Fn(&mut EnvoyPayload)| {
        let mut p = good.clone();
        edit(&mut p);
        check(Some(&p), &t)
    };
    let err = Err(TokenError::EnvoyPayloadMismatch);
    assert_eq!(
        mismatch(&|p| p.iss = b"https://other.example".to_vec()),
        err
    );
    assert_eq!(mismatch(&|p| p.subject = Some(b"mallory".to_vec())), err);
    assert_eq!(mismatch(&|p| p.subject = None), err);
    assert_eq!(
        mismatch(&|p| p.exp = Some(((NOW + 601) as f64).to_le_bytes().to_vec())),
        err
    );
    assert_eq!(
        mismatch(&|p| p.iat = Some(((NOW - 59) as f64).to_le_bytes().to_vec())),
        err
    );
    assert_eq!(mismatch(&|p| p.exp = None), err);
    // A number must come as the 8 bytes of a double: a string "1795392600" is not one.
    assert_eq!(
        mismatch(&|p| p.exp = Some((NOW + 600).to_string().into_bytes())),
        err
    );
    // A token without a subject matches only a payload without one.
    let mut no_sub = t.clone();
    no_sub.subject = None;
    assert_eq!(check(Some(&good), &no_sub), err);
    let mut p = good.clone();
    p.subject = None;
    assert_eq!(check(Some(&p), &no_sub), Ok(()));
}

// ---------------------------------------------------------------- decide in envoy mode

#[test]
fn a_token_envoy_verified_is_allowed_without_keys_in_the_vm() {
    let mut h = Harness::new(policy_with(|_| {}));
    assert!(
        !h.auth.has_keys(0),
        "envoy mode fetches no JWKS into the VM"
    );
    let v = h.verified(&claims());
    assert!(v.allowed(), "{v:?}");
    assert_eq!(
        v.set_headers
            .iter()
            .find(|(k, _)| *k == headers::SUBJECT)
            .map(|(_, v)| v.as_str()),
        Some("alice")
    );
    assert_eq!(v.cache, CacheOutcome::Miss);
}

#[test]
fn no_payload_from_envoy_is_401_unverified_by_envoy() {
    let mut h = Harness::new(policy_with(|_| {}));
    let v = h.run("/fhir/Patient/1", &token(&claims()), None, NOW);
    assert_eq!(reason(&v), Some("unverified_by_envoy"));
    assert_eq!(v.denial.as_ref().map(Denial::status), Some(401));
    assert_eq!(h.auth.cached_tokens(), 0);
}

#[test]
fn another_tokens_payload_is_401_envoy_payload_mismatch() {
    let mut h = Harness::new(policy_with(|_| {}));
    let mut other = claims();
    other["sub"] = json!("bob");
    let v = h.run(
        "/fhir/Patient/1",
        &token(&claims()),
        Some(payload_of(&other)),
        NOW,
    );
    assert_eq!(reason(&v), Some("envoy_payload_mismatch"));
    assert_eq!(v.denial.as_ref().map(Denial::status), Some(401));
}

#[test]
fn the_proof_is_asked_for_on_cache_hits_too() {
    let mut h = Harness::new(policy_with(|_| {}));
    let c = claims();
    assert!(h.verified(&c).allowed());
    assert_eq!(h.auth.cached_tokens(), 1);
    let again = h.verified(&c);
    assert!(again.allowed());
    assert_eq!(again.cache, CacheOutcome::Hit);
    // The same token again, but jwt_authn did not verify it this time.
    let v = h.run("/fhir/Patient/1", &token(&c), None, NOW);
    assert_eq!(v.cache, CacheOutcome::Hit);
    assert_eq!(reason(&v), Some("unverified_by_envoy"));
    let mut other = c.clone();
    other["exp"] = json!(NOW + 601);
    let v = h.run("/fhir/Patient/1", &token(&c), Some(payload_of(&other)), NOW);
    assert_eq!(reason(&v), Some("envoy_payload_mismatch"));
}

#[test]
fn header_rules_and_the_alg_allow_list_still_apply() {
    let mut h = Harness::new(policy_with(|_| {}));
    let c = claims();
    let body = B64.encode(c.to_string());
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "HS256"}),
        json!({"alg": "ES256"}), // allowed by RFC 8725, not by this provider's list
        json!({"alg": "EdDSA", "jwk": {"kty": "OKP"}}),
        json!({"alg": "EdDSA", "crit": ["exp"]}),
    ] {
        let t = format!("{}.{body}.c2ln", B64.encode(header.to_string()));
        let v = h.run("/fhir/Patient/1", &t, Some(payload_of(&c)), NOW);
        assert!(
            matches!(v.denial, Some(Denial::InvalidToken(r)) if r != "unverified_by_envoy"),
            "{header}: {v:?}"
        );
    }
}

#[test]
fn claim_rules_still_apply_with_their_own_reasons() {
    let mut h = Harness::new(policy_with(|_| {}));
    let cases = [
        ("exp", json!(NOW - 3600), "expired"),
        ("nbf", json!(NOW + 3600), "not_yet_valid"),
        ("iat", json!(NOW + 3600), "iat_in_future"),
        ("aud", json!("other"), "wrong_audience"),
        ("iat", json!(NOW - 7200), "lifetime_too_long"),
    ];
    for (claim, value, want) in cases {
        let mut c = claims();
        c[claim] = value;
        assert_eq!(reason(&h.verified(&c)), Some(want), "{claim}");
    }
}

#[test]
fn hipaa_rules_still_apply() {
    let mut h = Harness::new(policy_with(|_| {}));
    let mut c = claims();
    c["amr"] = json!(["pwd"]);
    assert_eq!(reason(&h.verified(&c)), Some("mfa_required"));
    let mut c = claims();
    c["sub"] = json!("shared");
    assert_eq!(reason(&h.verified(&c)), Some("shared_account"));
    let mut c = claims();
    c["roles"] = json!(["billing"]);
    assert_eq!(reason(&h.verified(&c)), Some("role_not_allowed"));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sid");
    assert_eq!(reason(&h.verified(&c)), Some("missing_session"));
    let mut c = claims();
    c["auth_time"] = json!(NOW - 50_000);
    assert_eq!(reason(&h.verified(&c)), Some("session_absolute"));
    // Break-glass widens roles for an eligible role, refuses an unlisted reason.
    let c = claims();
    let t = token(&c);
    let v = h.request(
        "/billing/1",
        &t,
        Some(payload_of(&c)),
        Some("patient-emergency"),
        NOW,
    );
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.emergency.as_deref(), Some("patient-emergency"));
    let v = h.request(
        "/billing/1",
        &t,
        Some(payload_of(&c)),
        Some("curiosity"),
        NOW,
    );
    assert_eq!(reason(&v), Some("break_glass_refused"));
    // The idle timeout: the same session after 901 s of silence.
    let mut c = claims();
    c["sid"] = json!("s-idle");
    c["iat"] = json!(NOW + 1000 - 60);
    c["exp"] = json!(NOW + 1000 + 3000);
    let t = token(&c);
    assert!(h
        .run("/fhir/Patient/1", &t, Some(payload_of(&c)), NOW + 1000)
        .allowed());
    let v = h.run(
        "/fhir/Patient/1",
        &t,
        Some(payload_of(&c)),
        NOW + 1000 + 901,
    );
    assert_eq!(reason(&v), Some("session_idle"));
}

#[test]
fn a_wasm_mode_provider_ignores_any_payload_and_checks_the_signature() {
    let mut h = Harness::new(policy_with(|_| {}));
    let mut c = claims();
    c["iss"] = json!(WASM_ISS);
    // Signed with the wrong key, "vouched for" by a matching payload: still bad_signature.
    let forged = token_by(9, &c);
    let v = h.run("/fhir/Patient/1", &forged, Some(payload_of(&c)), NOW);
    assert_eq!(reason(&v), Some("bad_signature"));
    // Signed with its key, no payload needed.
    let good = token_by(7, &c);
    assert!(h.run("/fhir/Patient/1", &good, None, NOW).allowed());
}

#[test]
fn verify_token_without_a_proof_refuses_envoy_mode_tokens() {
    let policy = policy_with(|_| {});
    let identity = &policy.spec.identity;
    let providers: Vec<crate::jwt::ProviderKeys<'_>> = identity
        .providers
        .iter()
        .map(|provider| crate::jwt::ProviderKeys {
            provider,
            keys: None,
        })
        .collect();
    let t = token(&claims());
    assert_eq!(
        crate::jwt::verify_token(&t, identity, &providers, NOW),
        Err(TokenError::UnverifiedByEnvoy)
    );
    assert!(crate::jwt::verify_token_with(
        &t,
        identity,
        &providers,
        NOW,
        Some(&payload_of(&claims())),
        &mut || true
    )
    .is_ok());
}
