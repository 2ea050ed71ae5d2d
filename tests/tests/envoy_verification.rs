//! `verification: envoy` in the real Envoy 1.40 with the real hipaa_authn.wasm: Envoy's native
//! jwt_authn checks the signature and puts the verified payload into dynamic metadata;
//! authn requires that payload for the very token it parses and enforces every HIPAA rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::envoy::{Envoy, Filter, Topology};
use hipaa_e2e::http::{get, Response};
use hipaa_e2e::idp::{self, assemble, decode, Keys, Upstream};
use serde_json::{json, Value};

fn spec(jwks: &str) -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": {"inline": jwks}, "algorithms": ["RS256", "ES256", "EdDSA"],
                "verification": "envoy"
            }],
            "sharedAccounts": {"denySubjects": ["admin", "shared"]},
            "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "allowRoles": ["clinician", "nurse"]},
            {"name": "billing", "match": {"pathPrefix": "/billing/"}, "phi": true, "allowRoles": ["billing"]}
        ]
    })
}

/// Envoy's jwt_authn as `policy render --target envoy` writes it for an inline key set:
/// the token from `Authorization: Bearer`, kept (`forward`), the payload in metadata under
/// `payload_key` (`payload`, as rendered and as Istio renders it), and a requirement that
/// never refuses by itself.
fn jwt_authn(jwks: &str, payload_key: &str) -> Value {
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"demo-idp": {
                "issuer": idp::ISSUER,
                "audiences": [idp::AUDIENCE],
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "forward": true,
                "payload_in_metadata": payload_key,
                "clock_skew_seconds": 30,
                "local_jwks": {"inline_string": jwks}
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "demo-idp"}, {"allow_missing_or_failed": {}}
            ]}}}]
        }
    })
}

struct Stack {
    keys: Keys,
    envoy: Envoy,
    _upstream: Upstream,
}

/// authn in envoy mode, with (`native: true`) or without Envoy's jwt_authn in front of it.
fn stack(native: bool) -> Stack {
    stack_keyed(native, "payload")
}

fn stack_keyed(native: bool, payload_key: &str) -> Stack {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let jwks = keys.jwks();
    let topology = Topology::new(
        upstream.port,
        vec![Filter {
            name: "authn",
            config: spec(&jwks).to_string(),
        }],
    );
    let envoy = Envoy::start_edited(&topology, |config| {
        if native {
            let filters = config
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
                .and_then(Value::as_array_mut)
                .unwrap();
            filters.insert(0, jwt_authn(&jwks, payload_key));
        }
    });
    Stack {
        keys,
        envoy,
        _upstream: upstream,
    }
}

fn clinician(keys: &Keys, alg: &str, sub: &str) -> String {
    keys.token(&[
        "--alg",
        alg,
        "--sub",
        sub,
        "--roles",
        "clinician",
        "--amr",
        "pwd,otp",
        "--sid",
        "s-1",
    ])
}

fn call(s: &Stack, path: &str, token: &str) -> Response {
    get(
        s.envoy.port,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// A 401 from authn (not from jwt_authn): RFC 6750 challenge, JSON body, the reason counted.
fn assert_authn_401(s: &Stack, r: &Response, error: &str, reason: &str, before: u64) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], error, "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"hipaa-mesh\"") && challenge.contains(error),
        "{challenge}"
    );
    assert_eq!(
        s.envoy
            .counter(&format!("wasmcustom.hipaa_authn.deny.{reason}")),
        before + 1,
        "the denial reason (x-hipaa-denial for the audit record) is {reason}"
    );
}

#[test]
fn envoy_verified_tokens_pass_and_every_rule_still_holds() {
    let s = stack(true);
    // Every algorithm, checked by Envoy (BoringSSL), passes with the identity headers.
    for alg in ["RS256", "ES256", "EdDSA"] {
        let r = call(&s, "/fhir/Patient/1", &clinician(&s.keys, alg, "alice"));
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
        assert_eq!(r.echoed_header("x-hipaa-subject").as_deref(), Some("alice"));
        assert_eq!(
            r.echoed_header("x-hipaa-roles").as_deref(),
            Some("clinician")
        );
    }
    assert_eq!(s.envoy.counter("wasmcustom.hipaa_authn.allow"), 3);

    // A forged signature: jwt_authn does not verify it, so no payload; authn answers.
    let good = clinician(&s.keys, "RS256", "alice");
    let (header, payload, sig) = decode(&good);
    let mut tampered = payload.clone();
    tampered["sub"] = json!("mallory");
    let forged = assemble(&header.to_string(), &tampered.to_string(), &sig);
    let r = call(&s, "/fhir/Patient/1", &forged);
    assert_authn_401(&s, &r, "invalid_token", "unverified_by_envoy", 0);
    assert!(!r.body.contains("mallory"));

    // A token signed by a key the IdP never published (a rogue key pair, same kid).
    let rogue = Keys::generate();
    let r = call(&s, "/fhir/Patient/1", &clinician(&rogue, "ES256", "alice"));
    assert_authn_401(&s, &r, "invalid_token", "unverified_by_envoy", 1);

    // Expired: jwt_authn refuses it too, but authn names the rule that failed.
    let expired = s.keys.token(&[
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "pwd,otp",
        "--sid",
        "s-1",
        "--ttl=-120",
    ]);
    let r = call(&s, "/fhir/Patient/1", &expired);
    assert_authn_401(&s, &r, "invalid_token", "expired", 0);

    // MFA: a clinician without an accepted amr gets the RFC 9470 step-up challenge.
    let no_mfa = s.keys.token(&[
        "--sub",
        "bob",
        "--roles",
        "clinician",
        "--amr",
        "pwd",
        "--sid",
        "s-2",
    ]);
    let r = call(&s, "/fhir/Patient/1", &no_mfa);
    assert_authn_401(
        &s,
        &r,
        "insufficient_user_authentication",
        "mfa_required",
        0,
    );

    // Roles: a verified nurse on a billing-only route.
    let nurse = s
        .keys
        .token(&["--sub", "nora", "--roles", "nurse", "--sid", "s-3"]);
    let r = call(&s, "/billing/7", &nurse);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "access_denied");
    assert_eq!(
        s.envoy
            .counter("wasmcustom.hipaa_authn.deny.role_not_allowed"),
        1
    );

    // A shared account, verified by Envoy, is still refused.
    let shared = clinician(&s.keys, "EdDSA", "shared");
    assert_eq!(call(&s, "/fhir/Patient/1", &shared).status, 403);

    // The good token again (a cache hit) still passes: Envoy verified it again.
    assert_eq!(call(&s, "/fhir/Patient/1", &good).status, 200);
}

#[test]
fn without_envoys_jwt_authn_no_token_passes() {
    // authn in envoy mode with nothing in front of it: the payload never appears.
    let s = stack(false);
    let good = clinician(&s.keys, "RS256", "alice");
    let r = call(&s, "/fhir/Patient/1", &good);
    assert_authn_401(&s, &r, "invalid_token", "unverified_by_envoy", 0);
    // A client cannot supply the proof: headers never reach dynamic metadata.
    let r = get(
        s.envoy.port,
        "/fhir/Patient/1",
        &[
            ("authorization", &format!("Bearer {good}")),
            (
                "x-envoy-jwt-payload",
                "{\"iss\":\"https://idp.demo.local\"}",
            ),
            ("payload", "alice"),
        ],
    );
    assert_authn_401(&s, &r, "invalid_token", "unverified_by_envoy", 1);
    assert_eq!(s.envoy.counter("wasmcustom.hipaa_authn.allow"), 0);
}

#[test]
fn the_issuer_as_payload_key_is_read_too() {
    // Older Istio releases stored the payload under the issuer rather than `payload`.
    let s = stack_keyed(true, idp::ISSUER);
    let r = call(&s, "/fhir/Patient/1", &clinician(&s.keys, "ES256", "alice"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed_header("x-hipaa-subject").as_deref(), Some("alice"));
    // Under any other key it is no proof.
    let s = stack_keyed(true, "somewhere-else");
    let r = call(&s, "/fhir/Patient/1", &clinician(&s.keys, "ES256", "alice"));
    assert_authn_401(&s, &r, "invalid_token", "unverified_by_envoy", 0);
}
