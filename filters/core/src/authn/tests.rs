//! Every branch of `decide`, with real EdDSA tokens signed at test time.

use super::*;
use crate::policy::Policy;
use crate::test_support::{
    clinician_claims as claims, ed25519_jwk as jwk_of, ed25519_jwks, eddsa_token,
    eddsa_token_kid as token_signed, ring_of, MemSessions, ISS, NOW,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// This module's token key: seed 7.
fn jwks() -> String {
    ed25519_jwks(7)
}

fn policy_with(extra: impl FnOnce(&mut Value)) -> Policy {
    let mut spec = json!({
        "identity": {
            "providers": [{"name": "idp", "issuer": ISS, "audiences": ["ehr"],
                           "jwks": {"inline": jwks()}, "algorithms": ["EdDSA"]}],
            "sharedAccounts": {"denySubjects": ["admin", "shared"], "denySubjectPrefixes": ["generic-"]},
            "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "PUT", "DELETE"]},
             "phi": true, "allowRoles": ["nurse", "clinician"], "softDeleteOnly": true},
            {"name": "billing", "match": {"pathPrefix": "/billing"}, "phi": true, "allowRoles": ["billing"]}
        ]
    });
    extra(&mut spec);
    Policy::from_spec_value(spec).unwrap()
}

fn policy() -> Policy {
    policy_with(|_| {})
}

fn token(claims: &Value) -> String {
    eddsa_token(7, claims)
}

fn with_claim(key: &str, value: Value) -> String {
    let mut c = claims();
    c[key] = value;
    token(&c)
}

struct Harness {
    policy: Policy,
    auth: Authenticator,
    sessions: MemSessions,
}

impl Harness {
    fn new(policy: Policy) -> Harness {
        let auth = Authenticator::new(&policy);
        Harness {
            policy,
            auth,
            sessions: MemSessions::default(),
        }
    }

    fn run(
        &mut self,
        method: &str,
        path: &str,
        auth: &[&str],
        bg: Option<&str>,
        now: u64,
    ) -> Verdict {
        let facts = RequestFacts {
            method: method.into(),
            path: path.into(),
            authorization: auth.iter().map(|s| s.to_string()).collect(),
            break_glass: bg.map(String::from),
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

    fn get(&mut self, token: &str) -> Verdict {
        self.run(
            "GET",
            "/fhir/Patient/1",
            &[&format!("Bearer {token}")],
            None,
            NOW,
        )
    }
}

fn header(v: &Verdict, name: &str) -> Option<String> {
    v.set_headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn a_valid_clinician_with_mfa_is_allowed_with_identity_headers() {
    let mut h = Harness::new(policy());
    let v = h.get(&token(&claims()));
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.route, "patient");
    assert_eq!(header(&v, headers::SUBJECT).as_deref(), Some("alice"));
    assert_eq!(header(&v, headers::ROLES).as_deref(), Some("clinician"));
    assert_eq!(header(&v, headers::SESSION).as_deref(), Some("s-1"));
    assert_eq!(header(&v, headers::AMR).as_deref(), Some("pwd,otp"));
    assert_eq!(header(&v, headers::BREAK_GLASS), None);
}

#[test]
fn public_routes_need_no_token() {
    let mut h = Harness::new(policy());
    let v = h.run("GET", "/healthz", &[], None, NOW);
    assert!(v.allowed());
    assert!(v.set_headers.is_empty());
    assert_eq!(v.cache, CacheOutcome::NotUsed);
}

#[test]
fn unmatched_routes_are_denied_by_default_and_phi_when_asked() {
    let bearer = format!("Bearer {}", token(&claims()));
    let mut h = Harness::new(policy());
    let v = h.run("GET", "/other", &[&bearer], None, NOW);
    assert_eq!(v.denial, Some(Denial::RouteDenied));
    assert_eq!(v.route, "unmatched");
    let mut h = Harness::new(policy_with(|s| s["unmatchedRoutes"] = json!("phi")));
    assert_eq!(
        h.run("GET", "/other", &[], None, NOW).denial,
        Some(Denial::MissingToken)
    );
    assert!(h.run("GET", "/other", &[&bearer], None, NOW).allowed());
}

/// Issue #12: a billing user's PATCH (HEAD, OPTIONS) on the patient route, which lists GET,
/// PUT and DELETE, fell to `unmatchedRoutes: phi` and passed without the route's roles. A
/// path a route covers gets that route's checks or a refusal: here a 405 with `Allow`,
/// whatever `unmatchedRoutes` says, before any token is looked at.
#[test]
fn an_unlisted_method_on_a_covered_path_is_405_never_the_unmatched_rule() {
    let mut c = claims();
    c["roles"] = json!(["billing"]);
    c["amr"] = json!(["pwd"]);
    let billing = format!("Bearer {}", token(&c));
    let mut h = Harness::new(policy_with(|s| s["unmatchedRoutes"] = json!("phi")));
    for method in ["PATCH", "HEAD", "OPTIONS", "POST", "TRACE"] {
        for auth in [vec![billing.as_str()], vec![]] {
            let v = h.run(method, "/fhir/Patient/123", &auth, None, NOW);
            assert_eq!(v.denial, Some(Denial::MethodNotAllowed), "{method}");
            assert_eq!(v.allowed_methods, ["GET", "PUT"], "{method}");
            assert!(v.set_headers.is_empty(), "{method}");
        }
    }
    // The listed method still gets the route's role check.
    let v = h.run("GET", "/fhir/Patient/123", &[&billing], None, NOW);
    assert_eq!(v.denial, Some(Denial::RoleNotAllowed));
}

/// Issue #12: over HTTP/2 Envoy forwards a lower-case `:method`; `delete` passed the
/// soft-delete check (case-sensitive) and case-folding frameworks ran it as DELETE.
#[test]
fn lower_case_methods_are_refused_before_any_check() {
    let bearer = format!("Bearer {}", token(&claims()));
    let mut h = Harness::new(policy());
    for method in ["delete", "Delete", "get", "pAtCh", "", "GET ", "DEL\tETE"] {
        for path in ["/fhir/Patient/1", "/healthz", "/billing/1", "/other"] {
            let v = h.run(method, path, &[&bearer], None, NOW);
            assert_eq!(
                v.denial,
                Some(Denial::MethodNotCanonical),
                "{method:?} {path}"
            );
            assert_eq!(v.denial.unwrap().status(), 400);
        }
    }
}

/// Issue #12: `/fhir/Patient/..;/Patient/vip/200` matched the patient route while Tomcat
/// resolves it to another record. `;` is refused on every route class, public included.
#[test]
fn path_parameters_and_unnormalised_paths_are_refused_on_every_route() {
    let bearer = format!("Bearer {}", token(&claims()));
    let mut h = Harness::new(policy_with(|s| s["unmatchedRoutes"] = json!("phi")));
    for path in [
        "/fhir/Patient/..;/Patient/vip/200",
        "/fhir/Patient/1;jsessionid=x",
        "/healthz;x",
        "/billing;a=b/1",
        "/other;x",
    ] {
        let v = h.run("GET", path, &[&bearer], None, NOW);
        assert_eq!(v.denial, Some(Denial::PathParameter), "{path}");
    }
    for path in [
        "/fhir/Patient/%2e%2e/Patient/vip/200",
        "/fhir//Patient/1",
        "/fhir/Patient/./1",
        "/fhir/Patient/1%2f..%2fvip",
        "/FHIR/Patient/1",
        "/fhir/patient/1",
        "/HEALTHZ",
    ] {
        let v = h.run("GET", path, &[&bearer], None, NOW);
        assert_eq!(v.denial, Some(Denial::PathNotCanonical), "{path}");
    }
}

#[test]
fn authorization_header_shapes() {
    let mut h = Harness::new(policy());
    let t = token(&claims());
    let deny =
        |h: &mut Harness, auth: &[&str], path: &str| h.run("GET", path, auth, None, NOW).denial;
    assert_eq!(
        deny(&mut h, &[], "/fhir/Patient/1"),
        Some(Denial::MissingToken)
    );
    assert_eq!(
        deny(&mut h, &["Basic abc"], "/fhir/Patient/1"),
        Some(Denial::MalformedAuthorization)
    );
    assert_eq!(
        deny(&mut h, &["Bearer"], "/fhir/Patient/1"),
        Some(Denial::MalformedAuthorization)
    );
    assert_eq!(
        deny(&mut h, &["Bearer a b"], "/fhir/Patient/1"),
        Some(Denial::MalformedAuthorization)
    );
    let two = format!("Bearer {t}");
    assert_eq!(
        deny(&mut h, &[&two, &two], "/fhir/Patient/1"),
        Some(Denial::MultipleCredentials)
    );
    let joined = format!("{two}, {two}");
    assert_eq!(
        deny(&mut h, &[&joined], "/fhir/Patient/1"),
        Some(Denial::MultipleCredentials)
    );
    assert_eq!(
        deny(&mut h, &[&two], "/fhir/Patient/1?access_token=x"),
        Some(Denial::MultipleCredentials)
    );
    assert_eq!(
        deny(&mut h, &[], "/fhir/Patient/1?access_token=x"),
        Some(Denial::MultipleCredentials)
    );
    assert_eq!(
        deny(&mut h, &[&format!("bearer {t}")], "/fhir/Patient/1"),
        None,
        "scheme is case-insensitive"
    );
}

#[test]
fn invalid_tokens_are_401_with_the_verifier_reason() {
    let mut h = Harness::new(policy());
    let v = h.get("not.a.token");
    assert!(matches!(v.denial, Some(Denial::InvalidToken(_))));
    assert_eq!(v.denial.unwrap().status(), 401);
    let v = h.get(&with_claim("exp", json!(NOW - 3600)));
    assert_eq!(v.denial, Some(Denial::InvalidToken("expired")));
}

#[test]
fn repeat_tokens_hit_the_cache_until_expiry() {
    let mut h = Harness::new(policy());
    let t = token(&claims());
    assert_eq!(h.get(&t).cache, CacheOutcome::Miss);
    assert_eq!(h.get(&t).cache, CacheOutcome::Hit);
    assert_eq!(h.auth.cached_tokens(), 1);
    // Past exp + skew the cached entry is gone and verification refuses the token.
    let v = h.run(
        "GET",
        "/fhir/Patient/1",
        &[&format!("Bearer {t}")],
        None,
        NOW + 600 + 31,
    );
    assert_eq!(v.cache, CacheOutcome::Miss);
    assert!(!v.allowed());
}

#[test]
fn failed_tokens_are_not_cached() {
    let mut h = Harness::new(policy());
    let t = with_claim("exp", json!(NOW - 3600));
    h.get(&t);
    assert_eq!(h.auth.cached_tokens(), 0);
}

#[test]
fn subject_must_be_present_and_not_shared() {
    let mut h = Harness::new(policy());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(h.get(&token(&c)).denial, Some(Denial::MissingSubject));
    assert_eq!(
        h.get(&with_claim("sub", json!("  "))).denial,
        Some(Denial::MissingSubject)
    );
    for shared in ["admin", "ADMIN", "shared", "generic-ward3"] {
        let v = h.get(&with_claim("sub", json!(shared)));
        assert_eq!(v.denial, Some(Denial::SharedAccount), "{shared}");
        assert_eq!(
            header(&v, headers::SUBJECT).as_deref(),
            Some(shared),
            "audit sees who tried"
        );
    }
    assert!(h
        .get(&with_claim("sub", json!("administrator-jones")))
        .allowed());
}

#[test]
fn claim_values_that_cannot_be_headers_are_refused() {
    let mut h = Harness::new(policy());
    assert_eq!(
        h.get(&with_claim("sub", json!("a\r\nx-hipaa-roles: admin")))
            .denial,
        Some(Denial::InvalidToken("bad_claim_value"))
    );
    assert_eq!(
        h.get(&with_claim("roles", json!(["clinician,admin"])))
            .denial,
        Some(Denial::InvalidToken("bad_claim_value"))
    );
}

#[test]
fn mfa_is_required_for_listed_roles_only() {
    let mut h = Harness::new(policy());
    let v = h.get(&with_claim("amr", json!(["pwd"])));
    assert_eq!(v.denial, Some(Denial::MfaRequired));
    assert_eq!(
        v.denial.unwrap().error(),
        "insufficient_user_authentication"
    );
    let mut c = claims();
    c["roles"] = json!(["nurse"]);
    c["amr"] = json!(["pwd"]);
    assert!(
        h.get(&token(&c)).allowed(),
        "nurse is not in requiredForRoles"
    );
    c["roles"] = json!(["nurse", "admin"]);
    assert_eq!(h.get(&token(&c)).denial, Some(Denial::MfaRequired));
}

#[test]
fn absolute_timeout_uses_auth_time_else_iat() {
    let mut h = Harness::new(policy_with(|s| {
        s["identity"]["providers"][0]["maxTokenLifetimeSeconds"] = json!(86_400);
    }));
    let v = h.get(&with_claim("auth_time", json!(NOW - 43_201)));
    assert_eq!(
        v.denial,
        Some(Denial::AuthenticationTooOld { max_age: 43_200 })
    );
    assert!(h
        .get(&with_claim("auth_time", json!(NOW - 43_000)))
        .allowed());
}

/// Issue #12, item 7: `iat` is renewed by every token refresh, so an absolute timeout counted
/// from it never ends a refreshing session. On a PHI route a token without `auth_time` is
/// refused with its own reason and the RFC 9470 challenge (with `max_age`, which makes the IdP
/// include `auth_time`); `requireAuthTime: false` accepts `iat` instead.
#[test]
fn a_token_without_auth_time_is_refused_on_phi_routes() {
    let mut h = Harness::new(policy());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("auth_time");
    // A token refreshed a moment ago, for a sign-in of any age.
    let v = h.get(&token(&c));
    assert_eq!(v.denial, Some(Denial::AuthTimeMissing { max_age: 43_200 }));
    let d = v.denial.unwrap();
    assert_eq!(d.status(), 401);
    assert_eq!(d.reason(), "auth_time_missing");
    assert_eq!(d.error(), "insufficient_user_authentication");
    let reply = d.reply("r", &[]);
    let challenge = reply
        .headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .unwrap();
    assert!(challenge.contains("error=\"insufficient_user_authentication\""));
    assert!(challenge.ends_with("max_age=43200"), "{challenge}");

    // A non-PHI protected route keeps the `iat` fallback.
    let mut h = Harness::new(policy_with(|s| {
        s["routes"][2]["phi"] = json!(false);
        s["routes"][2]["allowRoles"] = json!(["clinician"]);
    }));
    let t = token(&c);
    assert!(h
        .run("GET", "/billing/1", &[&format!("Bearer {t}")], None, NOW)
        .allowed());

    // The fallback setting: `iat` counts, as before.
    let mut h = Harness::new(policy_with(|s| {
        s["identity"]["session"] = json!({"requireAuthTime": false});
        s["identity"]["providers"][0]["maxTokenLifetimeSeconds"] = json!(86_400);
    }));
    assert!(h.get(&token(&c)).allowed());
    c["iat"] = json!(NOW - 43_201);
    c["exp"] = json!(NOW + 100);
    assert_eq!(
        h.get(&token(&c)).denial,
        Some(Denial::AuthenticationTooOld { max_age: 43_200 })
    );
}

#[test]
fn idle_sessions_expire_and_stay_expired() {
    let mut h = Harness::new(policy());
    let mut c = claims();
    c["exp"] = json!(NOW + 3000);
    let t = token(&c);
    let at = |h: &mut Harness, now: u64| {
        h.run(
            "GET",
            "/fhir/Patient/1",
            &[&format!("Bearer {t}")],
            None,
            now,
        )
    };
    assert!(at(&mut h, NOW).allowed());
    assert!(at(&mut h, NOW + 899).allowed());
    assert_eq!(
        at(&mut h, NOW + 899 + 901).denial,
        Some(Denial::SessionIdle)
    );
    assert_eq!(
        at(&mut h, NOW + 899 + 902).denial,
        Some(Denial::SessionIdle)
    );
    // A new session id of the same user is a new session.
    c["sid"] = json!("s-2");
    assert!(h
        .run(
            "GET",
            "/fhir/Patient/1",
            &[&format!("Bearer {}", token(&c))],
            None,
            NOW + 1802
        )
        .allowed());
}

#[test]
fn a_token_without_session_id_is_refused_while_idle_logoff_is_on() {
    let mut h = Harness::new(policy());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sid");
    assert_eq!(h.get(&token(&c)).denial, Some(Denial::MissingSession));
    let mut h = Harness::new(policy_with(|s| {
        s["identity"]["session"] = json!({"idleTimeoutSeconds": 0});
        s["exceptions"] = json!([{"safeguard": "automatic-logoff", "justification": "batch service accounts, no UI"}]);
    }));
    assert!(h.get(&token(&c)).allowed());
}

#[test]
fn an_unavailable_session_store_fails_closed() {
    let mut h = Harness::new(policy());
    h.sessions.broken = true;
    assert_eq!(h.get(&token(&claims())).denial, Some(Denial::SessionIdle));
}

#[test]
fn roles_gate_routes() {
    let mut h = Harness::new(policy());
    let t = token(&claims());
    let v = h.run("GET", "/billing/1", &[&format!("Bearer {t}")], None, NOW);
    assert_eq!(v.denial, Some(Denial::RoleNotAllowed));
    assert_eq!(v.denial.unwrap().status(), 403);
    let mut c = claims();
    c["roles"] = json!("nurse billing");
    c["amr"] = json!(["pwd"]);
    assert!(
        h.run(
            "GET",
            "/billing/1",
            &[&format!("Bearer {}", token(&c))],
            None,
            NOW
        )
        .allowed(),
        "space-separated roles"
    );
}

#[test]
fn hard_deletes_on_soft_delete_routes_are_405_with_allow() {
    let mut h = Harness::new(policy());
    let v = h.run(
        "DELETE",
        "/fhir/Patient/1",
        &[&format!("Bearer {}", token(&claims()))],
        None,
        NOW,
    );
    assert_eq!(v.denial, Some(Denial::HardDelete));
    assert_eq!(
        v.allowed_methods,
        vec!["GET".to_string(), "PUT".to_string()]
    );
}

#[test]
fn break_glass_widens_roles_for_eligible_roles_with_a_listed_reason() {
    let mut h = Harness::new(policy());
    let t = format!("Bearer {}", token(&claims()));
    let v = h.run("GET", "/billing/1", &[&t], Some("patient-emergency"), NOW);
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.emergency.as_deref(), Some("patient-emergency"));
    assert_eq!(
        header(&v, headers::BREAK_GLASS).as_deref(),
        Some("patient-emergency")
    );

    let v = h.run("GET", "/billing/1", &[&t], Some("curiosity"), NOW);
    assert_eq!(v.denial, Some(Denial::BreakGlassRefused));

    let mut c = claims();
    c["roles"] = json!(["nurse"]);
    let nurse = format!("Bearer {}", token(&c));
    let v = h.run(
        "GET",
        "/billing/1",
        &[&nurse],
        Some("patient-emergency"),
        NOW,
    );
    assert_eq!(
        v.denial,
        Some(Denial::BreakGlassRefused),
        "nurse is not eligible"
    );
}

#[test]
fn break_glass_never_skips_authentication_or_mfa() {
    let mut h = Harness::new(policy());
    let v = h.run("GET", "/billing/1", &[], Some("patient-emergency"), NOW);
    assert_eq!(v.denial, Some(Denial::MissingToken));
    let t = format!("Bearer {}", with_claim("amr", json!(["pwd"])));
    let v = h.run("GET", "/billing/1", &[&t], Some("patient-emergency"), NOW);
    assert_eq!(v.denial, Some(Denial::MfaRequired));
}

#[test]
fn break_glass_without_a_policy_section_is_refused() {
    let mut h = Harness::new(policy_with(|s| {
        s["identity"].as_object_mut().unwrap().remove("breakGlass");
    }));
    let t = format!("Bearer {}", token(&claims()));
    assert_eq!(
        h.run("GET", "/billing/1", &[&t], Some("patient-emergency"), NOW)
            .denial,
        Some(Denial::BreakGlassRefused)
    );
}

#[test]
fn remote_jwks_not_loaded_yet_refuses_with_401() {
    let mut h = Harness::new(policy_with(|s| {
        s["identity"]["providers"][0]["jwks"] = json!({"cluster": "idp", "path": "/jwks"});
    }));
    let v = h.get(&token(&claims()));
    assert_eq!(v.denial.map(|d| d.status()), Some(401));
    assert_eq!(v.denial.map(|d| d.reason()), Some("keys_not_loaded"));
    let keys = KeySet::from_jwks_json(&jwks(), &[crate::policy::Algorithm::EdDSA]).unwrap();
    h.auth.set_keys(0, keys);
    assert!(h.get(&token(&claims())).allowed());
}

#[test]
fn unknown_kid_asks_for_a_refetch() {
    let mut h = Harness::new(policy());
    let t = token_signed(7, "rotated", &claims());
    let v = h.get(&t);
    assert_eq!(v.denial.map(|d| d.reason()), Some("unknown_kid"));
    assert!(v.refetch_jwks);
}

#[test]
fn new_keys_drop_cached_identities_of_removed_keys_only() {
    let mut h = Harness::new(policy());
    let t = token(&claims());
    h.get(&t);
    assert_eq!(h.auth.cached_tokens(), 1);
    let keys = KeySet::from_jwks_json(&jwks(), &[crate::policy::Algorithm::EdDSA]).unwrap();
    h.auth.set_keys(0, keys);
    assert_eq!(h.auth.cached_tokens(), 1, "the same keys keep the cache");
    h.auth.set_keys(0, key_set(&[jwk_of(9, "k2")]));
    assert_eq!(h.auth.cached_tokens(), 0, "k1 left the set");
}

/// A token with a known `kid` and a signature that does not verify (one new per call).
fn forged(n: u64) -> String {
    let t = with_claim("jti", json!(format!("forged-{n}")));
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut sig = B64.decode(sig).unwrap();
    sig[0] ^= 1;
    format!("{head}.{}", B64.encode(sig))
}

fn budget_policy(per_second: u32, burst: u32) -> Policy {
    policy_with(|spec| {
        spec["identity"]["signatureFailureBudget"] =
            json!({"perSecond": per_second, "burst": burst});
    })
}

#[test]
fn a_forged_token_flood_is_shed_once_the_failure_budget_is_spent() {
    let mut h = Harness::new(budget_policy(1, 3));
    for n in 0..3 {
        assert_eq!(
            h.get(&forged(n)).denial,
            Some(Denial::InvalidToken("bad_signature"))
        );
    }
    // The bucket is empty: the next new token is not checked at all, valid or not.
    let shed = h.get(&forged(3));
    assert_eq!(shed.denial, Some(Denial::VerificationShed));
    assert_eq!(shed.cache, CacheOutcome::Miss);
    let reply = Denial::VerificationShed.reply("r-1", &[]);
    assert_eq!(reply.status, 429);
    assert!(reply
        .headers
        .iter()
        .any(|(k, v)| k == "retry-after" && v == "1"));
    assert!(reply.body.contains("temporarily_unavailable"));
    assert_eq!(
        h.get(&token(&claims())).denial,
        Some(Denial::VerificationShed)
    );
}

#[test]
fn cached_tokens_keep_working_while_new_ones_are_shed() {
    let mut h = Harness::new(budget_policy(1, 1));
    let valid = token(&claims());
    assert!(h.get(&valid).allowed());
    assert_eq!(
        h.get(&forged(0)).denial,
        Some(Denial::InvalidToken("bad_signature"))
    );
    assert_eq!(h.get(&forged(1)).denial, Some(Denial::VerificationShed));
    let v = h.get(&valid);
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.cache, CacheOutcome::Hit);
}

#[test]
fn the_budget_refills_and_successes_and_cheap_refusals_spend_nothing() {
    let mut h = Harness::new(budget_policy(1, 1));
    // Valid new tokens and tokens refused before the signature check leave the bucket alone.
    for n in 0..5 {
        assert!(h
            .get(&with_claim("jti", json!(format!("ok-{n}"))))
            .allowed());
        assert_eq!(h.get("not.a.token").denial.map(|d| d.status()), Some(401));
    }
    assert_eq!(
        h.get(&forged(0)).denial,
        Some(Denial::InvalidToken("bad_signature"))
    );
    assert_eq!(h.get(&forged(1)).denial, Some(Denial::VerificationShed));
    // A second later the bucket holds one check again: a valid new token gets it.
    let fresh = with_claim("jti", json!("after-refill"));
    let v = h.run(
        "GET",
        "/fhir/Patient/1",
        &[&format!("Bearer {fresh}")],
        None,
        NOW + 1,
    );
    assert!(v.allowed(), "{v:?}");
}

#[test]
fn a_zero_rate_turns_the_budget_off() {
    let mut h = Harness::new(budget_policy(0, 0));
    for n in 0..50 {
        assert_eq!(
            h.get(&forged(n)).denial,
            Some(Denial::InvalidToken("bad_signature"))
        );
    }
}

/// An unavailable clock (the shell reads 0) must not let a cached identity or an idle session
/// pass: with no time, neither expiry nor idleness can be checked.
#[test]
fn a_clock_at_zero_fails_closed_on_a_cache_hit() {
    let mut h = Harness::new(policy());
    let t = token(&claims());
    assert!(h.get(&t).allowed());
    let v = h.run("GET", "/fhir/Patient/1", &[&format!("Bearer {t}")], None, 0);
    assert_eq!(v.denial, Some(Denial::ClockUnavailable));
    assert_eq!(Denial::ClockUnavailable.status(), 503);
    // The clock comes back: the same token is served again.
    assert!(h.get(&t).allowed());
}

#[test]
fn a_clock_at_zero_fails_closed_on_the_idle_check() {
    let k = SessionKey::new(ISS, "s-1", 16);
    let (_, bucket) = session::touch(&[], &k, NOW, 900);
    let (state, after) = session::touch(&bucket, &k, 0, 900);
    assert_eq!(state, SessionState::Expired);
    // Not marked expired for good: the session is fine once the clock is back.
    assert_eq!(after, bucket);
    assert_eq!(
        session::touch(&after, &k, NOW + 10, 900).0,
        SessionState::Active
    );
    // And a new session is not started at time 0.
    let other = SessionKey::new(ISS, "s-2", 16);
    assert_eq!(session::touch(&[], &other, 0, 900).0, SessionState::Expired);
}

fn key_set(jwks: &[Value]) -> KeySet {
    KeySet::from_jwks_json(
        &json!({ "keys": jwks }).to_string(),
        &[crate::policy::Algorithm::EdDSA],
    )
    .unwrap()
}

/// A JWKS refresh that brings the same keys must not drop verified identities (every token
/// would pay a signature check again, and under a forged-token flood the budget would shed
/// sessions in progress with 429); a key that leaves the set ends the identities it verified,
/// and only those.
#[test]
fn a_jwks_refresh_drops_only_identities_whose_key_left_the_set() {
    let mut h = Harness::new(policy());
    let a = token(&claims());
    let mut cb = claims();
    cb["sub"] = json!("bob");
    cb["sid"] = json!("s-b");
    let b = token_signed(9, "k2", &cb);
    assert_eq!(h.get(&a).cache, CacheOutcome::Miss);
    assert_eq!(h.get(&a).cache, CacheOutcome::Hit);

    // The periodic refresh: the same set, parsed again.
    h.auth.set_keys(0, key_set(&[jwk_of(7, "k1")]));
    let v = h.get(&a);
    assert!(v.allowed());
    assert_eq!(
        v.cache,
        CacheOutcome::Hit,
        "an unchanged set emptied the cache"
    );

    // A key is added (rotation begins): the old key's identities stay cached.
    h.auth
        .set_keys(0, key_set(&[jwk_of(7, "k1"), jwk_of(9, "k2")]));
    assert_eq!(h.get(&a).cache, CacheOutcome::Hit);
    assert_eq!(h.get(&b).cache, CacheOutcome::Miss);
    assert_eq!(h.get(&b).cache, CacheOutcome::Hit);

    // k1 leaves the set: its identity ends at once, k2's stays cached.
    h.auth.set_keys(0, key_set(&[jwk_of(9, "k2")]));
    let v = h.get(&a);
    assert_eq!(v.cache, CacheOutcome::Miss);
    assert_eq!(v.denial, Some(Denial::InvalidToken("unknown_kid")));
    assert_eq!(h.get(&b).cache, CacheOutcome::Hit);

    // The same kid with other material is another key: its identities end too.
    h.auth.set_keys(0, key_set(&[jwk_of(11, "k2")]));
    let v = h.get(&b);
    assert_eq!(v.cache, CacheOutcome::Miss);
    assert_eq!(v.denial, Some(Denial::InvalidToken("bad_signature")));
}

// ------------------------------------------------------------ the session authority (#16)

fn authority_policy(on_unavailable: &str) -> Policy {
    policy_with(|s| {
        s["identity"]["session"] = json!({"idleTimeoutSeconds": 900,
            "authority": {"cluster": "audit-collector", "onUnavailable": on_unavailable}});
    })
}

fn revocation_list(target: &str, value: &str) -> authority::RevocationList {
    authority::RevocationList::parse(
        json!({"revocations": [{"target": target, "value": value, "issuer": null,
            "revokedAtMs": (NOW - 10) * 1000, "expiresAtMs": (NOW + 3600) * 1000}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn a_revoked_subject_or_session_is_refused_before_the_session_logic() {
    let mut h = Harness::new(authority_policy("local"));
    h.auth.revocations.replace(
        revocation_list("subject", "alice"),
        None,
        (NOW * 1000) as i64,
    );
    let v = h.get(&token(&claims()));
    assert_eq!(v.denial, Some(Denial::SessionRevoked));
    assert_eq!(v.consult, None, "a revoked token costs no call");
    assert_eq!(header(&v, headers::SUBJECT).as_deref(), Some("alice"));
    // Another user is untouched.
    assert!(h.get(&with_claim("sub", json!("bob"))).consult.is_some());
    // By session id.
    h.auth
        .revocations
        .replace(revocation_list("session", "s-2"), None, (NOW * 1000) as i64);
    assert_eq!(
        h.get(&with_claim("sid", json!("s-2"))).denial,
        Some(Denial::SessionRevoked)
    );
    assert!(h.get(&token(&claims())).denial.is_none());
}

#[test]
fn with_an_authority_first_sight_and_local_idle_ask_and_the_active_path_does_not() {
    let mut h = Harness::new(authority_policy("local"));
    let mut c = claims();
    c["exp"] = json!(NOW + 3000);
    let t = format!("Bearer {}", token(&c));
    let first = h.run("GET", "/fhir/Patient/1", &[&t], None, NOW);
    assert!(first.allowed());
    let check = first.consult.expect("first sight asks");
    assert_eq!(check.view, authority::LocalView::FirstSight);
    assert_eq!(check.local_last_seen_ms, None);
    assert_eq!(check.auth_time_ms, Some(((NOW - 60) * 1000) as i64));
    assert_eq!(
        (check.subject.as_str(), check.session.as_str()),
        ("alice", "s-1")
    );
    let req = check.request(&h.policy.spec.identity.session, 5);
    assert_eq!((req.now_ms, req.idle_timeout_seconds), (5, 900));

    let again = h.run("GET", "/fhir/Patient/1", &[&t], None, NOW + 10);
    assert!(again.allowed());
    assert_eq!(again.consult, None, "locally active: no call");

    let idle = h.run("GET", "/fhir/Patient/1", &[&t], None, NOW + 10 + 901);
    assert!(
        idle.allowed(),
        "locally idle is not the end: the authority decides"
    );
    let check = idle.consult.expect("locally idle asks");
    assert_eq!(check.view, authority::LocalView::LocallyIdle);
    assert_eq!(check.local_last_seen_ms, Some(((NOW + 10) * 1000) as i64));

    // The authority ended it: remembered, the next request is refused without a call.
    h.auth
        .ended
        .insert(check.key.id(), check.auth_time_ms, Denial::SessionIdle);
    let v = h.run("GET", "/fhir/Patient/1", &[&t], None, NOW + 912);
    assert_eq!((v.denial, v.consult), (Some(Denial::SessionIdle), None));
}

#[test]
fn a_later_denial_wins_over_a_pending_check() {
    let mut h = Harness::new(authority_policy("local"));
    let t = token(&claims());
    let v = h.run("GET", "/billing/1", &[&format!("Bearer {t}")], None, NOW);
    assert_eq!(v.denial, Some(Denial::RoleNotAllowed));
}

#[test]
fn settle_revives_on_active_and_remembers_what_the_authority_ended() {
    use authority::wire::{seal, CheckAnswer, Purpose};
    use authority::{AuthorityDecision, Outcome};
    let ring = ring_of("k1", 9);
    let policy = authority_policy("local");
    let a = policy.spec.identity.session.authority.clone().unwrap();
    let mut h = Harness::new(policy);
    let check = h.get(&token(&claims())).consult.unwrap();
    let body = check.request(&h.policy.spec.identity.session, 1).encode();
    let (_, tag) = seal(&ring, Purpose::CheckRequest, &[&body]);
    let answer = |d| {
        let body = CheckAnswer {
            decision: d,
            last_activity_ms: Some(7_000),
        }
        .encode();
        let (mac, _) = seal(&ring, Purpose::CheckAnswer, &[&tag, &body]);
        (mac, body)
    };
    let mut ended = authority::EndedSessions::default();
    let (mac, body) = answer(AuthorityDecision::Active);
    let c = check.settle(
        &ring,
        &tag,
        200,
        Some(mac.as_bytes()),
        &body,
        &a,
        43_200,
        &mut ended,
    );
    assert_eq!(
        (c.outcome, c.counter),
        (
            Outcome::Allow {
                revive_to_ms: Some(7_000)
            },
            "active"
        )
    );
    assert!(ended.is_empty());
    // A forged or unanswered check is `unavailable`: first sight passes with `local`.
    let c = check.settle(
        &ring,
        &tag,
        200,
        Some(mac.as_bytes()),
        b"{}",
        &a,
        43_200,
        &mut ended,
    );
    assert_eq!(
        (c.outcome, c.counter),
        (Outcome::Allow { revive_to_ms: None }, "unavailable")
    );
    let c = check.settle(&ring, &tag, 0, None, b"", &a, 43_200, &mut ended);
    assert_eq!(c.counter, "unavailable");
    let (mac, body) = answer(AuthorityDecision::Idle);
    let c = check.settle(
        &ring,
        &tag,
        200,
        Some(mac.as_bytes()),
        &body,
        &a,
        43_200,
        &mut ended,
    );
    assert_eq!(
        c.outcome,
        Outcome::Deny {
            denial: Denial::SessionIdle,
            remember_ended: true
        }
    );
    assert_eq!(
        ended.get(check.key.id(), check.auth_time_ms),
        Some(Denial::SessionIdle)
    );
}

#[test]
fn call_status_reads_only_real_statuses() {
    use authority::call_status;
    assert_eq!(call_status(Some("200")), 200);
    assert_eq!(call_status(Some("304")), 304);
    assert_eq!(call_status(None), 0);
    assert_eq!(call_status(Some("abc")), 0);
    assert_eq!(call_status(Some("99999999999")), 0);
}
