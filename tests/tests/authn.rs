//! hipaa_authn.wasm in the real Envoy 1.40 (V8): every identity rule and the attacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::envoy::{Envoy, Filter, Topology};
use hipaa_e2e::http::{get, request, Response};
use hipaa_e2e::idp::{self, assemble, b64, decode, Keys, Upstream};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn spec(jwks: Value, idle: u64) -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": jwks, "algorithms": ["RS256", "ES256", "EdDSA"], "maxTokenLifetimeSeconds": 3600
            }],
            "sharedAccounts": {"denySubjects": ["admin", "shared"], "denySubjectPrefixes": ["generic-"]},
            "session": {"idleTimeoutSeconds": idle, "absoluteTimeoutSeconds": 43200},
            "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "PUT", "DELETE"]},
             "phi": true, "allowRoles": ["clinician", "nurse"],
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}, "softDeleteOnly": true},
            {"name": "billing", "match": {"pathPrefix": "/billing/"}, "phi": true, "allowRoles": ["billing"]}
        ]
    })
}

struct Stack {
    keys: Keys,
    envoy: Envoy,
    _upstream: Upstream,
}

fn stack_with(idle: u64) -> Stack {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let config = spec(json!({"inline": keys.jwks()}), idle).to_string();
    let topology = Topology::new(
        upstream.port,
        vec![Filter {
            name: "authn",
            config,
        }],
    );
    let envoy = Envoy::start(&topology);
    Stack {
        keys,
        envoy,
        _upstream: upstream,
    }
}

fn stack() -> Stack {
    stack_with(900)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get_patient(s: &Stack, token: &str) -> Response {
    get(
        s.envoy.port,
        "/fhir/Patient/123",
        &[("authorization", &bearer(token))],
    )
}

fn assert_denied(r: &Response, status: u16, error: &str, token: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    assert_eq!(body["error"], error, "{}", r.body);
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "request_id in {}",
        r.body
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    if let Some(token) = token {
        assert!(!r.body.contains(token), "the body echoes the token");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!r.body.contains(part), "the body echoes part of the token");
        }
    }
}

#[test]
fn valid_tokens_of_every_algorithm_pass_with_identity_headers() {
    let s = stack();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let t = s.keys.token(&[
            "--alg",
            alg,
            "--sub",
            "alice",
            "--roles",
            "clinician,nurse",
            "--amr",
            "pwd,hwk",
            "--sid",
            "sid-a",
        ]);
        let r = get_patient(&s, &t);
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
        assert_eq!(r.echoed_header("x-hipaa-subject").as_deref(), Some("alice"));
        assert_eq!(
            r.echoed_header("x-hipaa-roles").as_deref(),
            Some("clinician,nurse")
        );
        assert_eq!(r.echoed_header("x-hipaa-session").as_deref(), Some("sid-a"));
        assert_eq!(r.echoed_header("x-hipaa-break-glass"), None);
    }
}

#[test]
fn spoofed_hipaa_headers_are_removed_on_every_route() {
    let s = stack();
    let t = s.keys.clinician("alice");
    let spoof = [
        ("x-hipaa-subject", "mallory"),
        ("X-Hipaa-Break-Glass", "disaster"),
        ("x-hipaa-denial", "none"),
    ];
    let mut headers = vec![("authorization", bearer(&t))];
    headers.extend(spoof.iter().map(|(k, v)| (*k, v.to_string())));
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = get(s.envoy.port, "/fhir/Patient/1", &hs);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-hipaa-subject").as_deref(), Some("alice"));
    assert_eq!(r.echoed_header("x-hipaa-break-glass"), None);
    assert_eq!(r.echoed_header("x-hipaa-denial"), None);

    let r = get(s.envoy.port, "/healthz", &spoof);
    assert_eq!(r.status, 200, "public route needs no token");
    for (k, _) in spoof {
        assert_eq!(
            r.echoed_header(&k.to_ascii_lowercase()),
            None,
            "{k} reached the upstream"
        );
    }
}

#[test]
fn missing_and_malformed_credentials() {
    let s = stack();
    let r = get(s.envoy.port, "/fhir/Patient/1", &[]);
    assert_denied(&r, 401, "invalid_token", None);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"hipaa-mesh\"")
    );

    let r = get(
        s.envoy.port,
        "/fhir/Patient/1",
        &[("authorization", "Basic YWxpY2U6cHc=")],
    );
    assert_denied(&r, 401, "invalid_token", None);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));

    let t = s.keys.clinician("alice");
    let r = get(
        s.envoy.port,
        "/fhir/Patient/1",
        &[
            ("authorization", &bearer(&t)),
            ("authorization", &bearer(&t)),
        ],
    );
    assert_denied(&r, 400, "invalid_request", Some(&t));
    let r = get(
        s.envoy.port,
        &format!("/fhir/Patient/1?access_token={t}"),
        &[("authorization", &bearer(&t))],
    );
    assert_denied(&r, 400, "invalid_request", Some(&t));

    // Unmatched paths are refused by default (`unmatchedRoutes: deny`), never public.
    assert_eq!(get(s.envoy.port, "/somewhere/else", &[]).status, 403);
}

#[test]
fn attacks_are_4xx_never_5xx_and_envoy_keeps_serving() {
    let mut s = stack();
    let good = s.keys.clinician("alice");
    let (header, payload, sig) = decode(&good);
    let payload_text = payload.to_string();

    let mut attacks: Vec<(&str, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        attacks.push((
            "alg none",
            assemble(
                &json!({"alg": alg, "typ": "JWT"}).to_string(),
                &payload_text,
                "",
            ),
        ));
        attacks.push((
            "alg none + sig",
            assemble(&json!({"alg": alg}).to_string(), &payload_text, &sig),
        ));
    }
    let mut tampered = payload.clone();
    tampered["roles"] = json!(["admin", "clinician"]);
    attacks.push((
        "tampered payload",
        assemble(&header.to_string(), &tampered.to_string(), &sig),
    ));
    let mut h = header.clone();
    h["kid"] = json!("no-such-key");
    attacks.push(("unknown kid", assemble(&h.to_string(), &payload_text, &sig)));
    let mut h = header.clone();
    h["alg"] = json!("HS256");
    attacks.push((
        "HS256 key confusion",
        assemble(&h.to_string(), &payload_text, &sig),
    ));
    let mut h = header.clone();
    h["jku"] = json!("https://evil.example/jwks.json");
    attacks.push(("jku header", assemble(&h.to_string(), &payload_text, &sig)));
    attacks.push(("garbage", "a.b.c".into()));
    attacks.push(("one segment", "eyJhbGciOiJSUzI1NiJ9".into()));
    attacks.push(("JWE five segments", format!("{good}.x.y")));
    attacks.push(("oversized", format!("{good}{}", "A".repeat(20_000))));
    attacks.push(("non-base64url", good.replacen('.', "!.", 1)));
    let ec = s.keys.token(&[
        "--alg",
        "ES256",
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
    ]);
    let (eh, ep, _) = decode(&ec);
    attacks.push((
        "ECDSA all-zero signature",
        assemble(&eh.to_string(), &ep.to_string(), &b64(&[0u8; 64])),
    ));

    // A rogue key presenting a known kid.
    let rogue = Keys::generate();
    let forged = rogue.token(&[
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
        "--kid",
        "demo-rsa",
    ]);
    attacks.push(("rogue key under a known kid", forged));

    for (name, token) in &attacks {
        let r = get_patient(&s, token);
        assert!(
            (400..500).contains(&r.status),
            "{name}: got {} {}",
            r.status,
            r.body
        );
        assert_denied(
            &r,
            r.status,
            r.json()["error"].as_str().unwrap(),
            Some(token),
        );
    }
    assert!(s.envoy.healthy(), "Envoy died under attack");
    assert_eq!(
        get_patient(&s, &good).status,
        200,
        "valid traffic still served"
    );
    assert!(
        !s.envoy.log().contains(&good),
        "a token reached the Envoy log"
    );
}

#[test]
fn expired_and_overlong_tokens_are_refused() {
    let s = stack();
    let expired = s.keys.token(&[
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
        "--ttl=-120",
    ]);
    let r = get_patient(&s, &expired);
    assert_denied(&r, 401, "invalid_token", Some(&expired));
    let long = s.keys.token(&[
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
        "--ttl",
        "7200",
    ]);
    assert_denied(&get_patient(&s, &long), 401, "invalid_token", Some(&long));
    let wrong_aud = s.keys.token(&[
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
        "--aud",
        "other-api",
    ]);
    assert_denied(&get_patient(&s, &wrong_aud), 401, "invalid_token", None);
    let wrong_iss = s.keys.token(&[
        "--sub",
        "alice",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
        "--iss",
        "https://evil",
    ]);
    assert_denied(&get_patient(&s, &wrong_iss), 401, "invalid_token", None);
}

#[test]
fn identity_rules_shared_accounts_mfa_roles_and_soft_delete() {
    let s = stack();
    let shared = s.keys.clinician("admin");
    assert_denied(
        &get_patient(&s, &shared),
        403,
        "access_denied",
        Some(&shared),
    );
    let generic = s.keys.clinician("generic-ward7");
    assert_denied(&get_patient(&s, &generic), 403, "access_denied", None);
    let no_sub = s
        .keys
        .token(&["--roles", "clinician", "--amr", "otp", "--sid", "s"]);
    assert_denied(&get_patient(&s, &no_sub), 401, "invalid_token", None);

    let no_mfa = s.keys.token(&[
        "--sub",
        "bob",
        "--roles",
        "clinician",
        "--amr",
        "pwd",
        "--sid",
        "s-bob",
    ]);
    let r = get_patient(&s, &no_mfa);
    assert_denied(&r, 401, "insufficient_user_authentication", Some(&no_mfa));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_user_authentication"));

    let old_login = s.keys.token(&[
        "--sub",
        "carol",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s-c",
        "--auth-age",
        "50000",
    ]);
    let r = get_patient(&s, &old_login);
    assert_denied(&r, 401, "insufficient_user_authentication", None);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("max_age=43200"));

    let nurse = s.keys.token(&[
        "--sub", "nina", "--roles", "nurse", "--amr", "pwd", "--sid", "s-n",
    ]);
    assert_eq!(
        get_patient(&s, &nurse).status,
        200,
        "nurses need no MFA under this policy"
    );
    let r = get(
        s.envoy.port,
        "/billing/1",
        &[("authorization", &bearer(&nurse))],
    );
    assert_denied(&r, 403, "access_denied", None);

    let alice = s.keys.clinician("alice");
    let r = request(
        s.envoy.port,
        "DELETE",
        "/fhir/Patient/1",
        &[("authorization", &bearer(&alice))],
        b"",
    );
    assert_denied(&r, 405, "method_not_allowed", None);
    assert_eq!(r.header("allow"), Some("GET, PUT"));
}

#[test]
fn break_glass_is_flagged_for_eligible_roles_and_refused_otherwise() {
    let s = stack();
    let alice = bearer(&s.keys.clinician("alice"));
    let r = get(
        s.envoy.port,
        "/billing/1",
        &[
            ("authorization", &alice),
            ("x-break-glass", "patient-emergency"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.echoed_header("x-hipaa-break-glass").as_deref(),
        Some("patient-emergency")
    );
    let r = get(
        s.envoy.port,
        "/billing/1",
        &[("authorization", &alice), ("x-break-glass", "curious")],
    );
    assert_denied(&r, 403, "access_denied", None);
    let nurse = bearer(&s.keys.token(&[
        "--sub", "nina", "--roles", "nurse", "--amr", "otp", "--sid", "s-n",
    ]));
    let r = get(
        s.envoy.port,
        "/billing/1",
        &[
            ("authorization", &nurse),
            ("x-break-glass", "patient-emergency"),
        ],
    );
    assert_denied(&r, 403, "access_denied", None);
    let r = get(
        s.envoy.port,
        "/billing/1",
        &[("x-break-glass", "patient-emergency")],
    );
    assert_denied(&r, 401, "invalid_token", None);
}

#[test]
fn idle_sessions_end_and_stay_ended_across_workers() {
    let s = stack_with(2);
    let t = s.keys.clinician("dave");
    for _ in 0..4 {
        assert_eq!(get_patient(&s, &t).status, 200);
    }
    std::thread::sleep(Duration::from_millis(3200));
    let r = get_patient(&s, &t);
    assert_denied(&r, 401, "invalid_token", Some(&t));
    assert!(r.header("www-authenticate").unwrap().contains("inactivity"));
    // Several connections, so both worker threads see it: the session stays refused.
    for _ in 0..6 {
        assert_eq!(get_patient(&s, &t).status, 401);
    }
    assert!(s.envoy.counter("wasmcustom.hipaa_authn.deny.session_idle") >= 7);
}

#[test]
fn a_repeat_token_is_served_from_the_cache() {
    let s = stack();
    let t = s.keys.clinician("erin");
    for _ in 0..10 {
        assert_eq!(get_patient(&s, &t).status, 200);
    }
    let hits = s.envoy.counter("wasmcustom.hipaa_authn.token_cache.hit");
    let misses = s.envoy.counter("wasmcustom.hipaa_authn.token_cache.miss");
    // Two workers: at most one miss each, the rest hits.
    assert!(misses <= 2, "misses {misses}");
    assert!(hits >= 8, "hits {hits}");
    assert!(s.envoy.counter("wasmcustom.hipaa_authn.allow") >= 10);
}

#[test]
fn a_forged_token_flood_is_shed_while_cached_sessions_keep_working() {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let mut policy = spec(json!({"inline": keys.jwks()}), 900);
    policy["identity"]["signatureFailureBudget"] = json!({"perSecond": 1, "burst": 2});
    let mut topology = Topology::new(
        upstream.port,
        vec![Filter {
            name: "authn",
            config: policy.to_string(),
        }],
    );
    // One worker: the budget and the token cache are per worker VM.
    topology.concurrency = 1;
    let s = Stack {
        envoy: Envoy::start(&topology),
        keys,
        _upstream: upstream,
    };
    let good = s.keys.clinician("frank");
    assert_eq!(get_patient(&s, &good).status, 200);

    // A rogue key under the IdP's kid: each token reaches the signature check and fails.
    let rogue = Keys::generate();
    let forged = rogue.token(&[
        "--sub",
        "frank",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s",
        "--kid",
        "demo-rsa",
    ]);
    let mut refused = 0;
    let shed = loop {
        let r = get_patient(&s, &forged);
        if r.status == 429 {
            break r;
        }
        assert_denied(&r, 401, "invalid_token", Some(&forged));
        refused += 1;
        assert!(refused <= 10, "the budget never ran out");
    };
    assert!(refused >= 2, "shed before the burst was spent ({refused})");
    assert_denied(&shed, 429, "temporarily_unavailable", Some(&forged));
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(
        s.envoy
            .counter("wasmcustom.hipaa_authn.deny.verification_shed")
            >= 1
    );

    // The identity verified before the flood is still served from the cache.
    let r = get_patient(&s, &good);
    assert_eq!(r.status, 200, "{}", r.body);
    // Once the budget refills, a new valid token is checked and passes.
    std::thread::sleep(Duration::from_millis(2100));
    let fresh = s.keys.clinician("grace");
    let r = get_patient(&s, &fresh);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_bad_policy_is_refused_at_start_naming_the_key() {
    let keys = Keys::generate();
    let mut bad = spec(json!({"inline": keys.jwks()}), 900);
    bad["routes"][1]["match"]["pathPrefx"] = json!("/x");
    bad["unmatchedRoutes"] = json!("public");
    let topology = Topology::new(
        1,
        vec![Filter {
            name: "authn",
            config: bad.to_string(),
        }],
    );
    let (code, log) = Envoy::start_expecting_failure(&topology);
    assert_ne!(code, 0);
    assert!(log.contains("spec.routes[1].match.pathPrefx"), "{log}");
    assert!(log.contains("spec.unmatchedRoutes"), "{log}");
    assert!(!log.contains("BEGIN PRIVATE KEY"));

    let topology = Topology::new(
        1,
        vec![Filter {
            name: "authn",
            config: "{not json".into(),
        }],
    );
    let (code, log) = Envoy::start_expecting_failure(&topology);
    assert_ne!(code, 0);
    assert!(log.contains("not valid JSON"), "{log}");
}

/// A JWKS endpoint the test controls: serves `body` with `status`, counts requests.
struct JwksServer {
    port: u16,
    state: Arc<Mutex<(u16, String, usize)>>,
}

impl JwksServer {
    fn start(status: u16, body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new((status, body, 0usize)));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                                break;
                            }
                        }
                        let (status, body) = {
                            let mut s = shared.lock().unwrap();
                            s.2 += 1;
                            (s.0, s.1.clone())
                        };
                        let _ = write!(stream, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    }
                });
            }
        });
        JwksServer { port, state }
    }

    fn set(&self, status: u16, body: String) {
        let mut s = self.state.lock().unwrap();
        s.0 = status;
        s.1 = body;
    }

    fn requests(&self) -> usize {
        self.state.lock().unwrap().2
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn remote_stack(jwks: &JwksServer) -> (Keys, Envoy, Upstream) {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let config = spec(
        json!({"cluster": "demo-idp", "path": "/jwks.json", "refreshSeconds": 10, "timeoutMs": 1000}),
        900,
    );
    let mut topology = Topology::new(
        upstream.port,
        vec![Filter {
            name: "authn",
            config: config.to_string(),
        }],
    );
    topology.clusters.push(("demo-idp".into(), jwks.port));
    let envoy = Envoy::start(&topology);
    (keys, envoy, upstream)
}

#[test]
fn remote_jwks_refused_until_fetched_then_kept_through_failures() {
    let jwks = JwksServer::start(503, "down".into());
    let (keys, envoy, _up) = remote_stack(&jwks);
    let t = keys.clinician("frank");
    // The IdP is down: no keys yet, so PHI requests are refused, never passed.
    assert!(wait_until(Duration::from_secs(10), || envoy
        .counter("wasmcustom.hipaa_authn.jwks.fetch_failed")
        >= 1));
    let r = get(
        envoy.port,
        "/fhir/Patient/1",
        &[("authorization", &bearer(&t))],
    );
    assert_denied(&r, 401, "invalid_token", Some(&t));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("not available yet"));

    // The IdP comes back (with the keys that signed the token): served within the backoff.
    jwks.set(200, keys.jwks());
    assert!(
        wait_until(Duration::from_secs(30), || get(
            envoy.port,
            "/fhir/Patient/1",
            &[("authorization", &bearer(&t))]
        )
        .status
            == 200),
        "keys never arrived"
    );
    assert!(envoy.counter("wasmcustom.hipaa_authn.jwks.fetch_ok") >= 1);

    // The IdP fails again: the last good set is kept across the refresh.
    jwks.set(500, "oops".into());
    let failed_before = envoy.counter("wasmcustom.hipaa_authn.jwks.fetch_failed");
    assert!(wait_until(Duration::from_secs(25), || envoy
        .counter("wasmcustom.hipaa_authn.jwks.fetch_failed")
        > failed_before));
    let t2 = keys.clinician("grace");
    assert_eq!(
        get(
            envoy.port,
            "/fhir/Patient/1",
            &[("authorization", &bearer(&t2))]
        )
        .status,
        200
    );
}

#[test]
fn remote_jwks_garbage_is_refused_and_an_unknown_kid_triggers_one_refetch() {
    let first = Keys::generate();
    let jwks = JwksServer::start(200, "{\"keys\": \"garbage\"}".into());
    let (_, envoy, _up) = remote_stack(&jwks);
    assert!(wait_until(Duration::from_secs(10), || envoy
        .counter("wasmcustom.hipaa_authn.jwks.fetch_failed")
        >= 1));
    jwks.set(200, first.jwks());
    let t = first.clinician("heidi");
    assert!(wait_until(Duration::from_secs(30), || get(
        envoy.port,
        "/fhir/Patient/1",
        &[("authorization", &bearer(&t))]
    )
    .status
        == 200));

    // Key rotation: the IdP now serves a new set; a token signed with it names a new kid.
    let rotated = Keys::generate();
    let mut set: Value = serde_json::from_str(&rotated.jwks()).unwrap();
    for k in set["keys"].as_array_mut().unwrap() {
        k["kid"] = json!(format!("{}-2", k["kid"].as_str().unwrap()));
    }
    jwks.set(200, set.to_string());
    let new_token = rotated.token(&[
        "--sub",
        "ivan",
        "--roles",
        "clinician",
        "--amr",
        "otp",
        "--sid",
        "s-i",
        "--kid",
        "demo-rsa-2",
    ]);
    let before = jwks.requests();
    let r = get(
        envoy.port,
        "/fhir/Patient/1",
        &[("authorization", &bearer(&new_token))],
    );
    assert_eq!(r.status, 401, "unknown kid before the refetch");
    // A burst of unknown kids asks for one refetch, not one per request.
    for _ in 0..20 {
        get(
            envoy.port,
            "/fhir/Patient/1",
            &[("authorization", &bearer(&new_token))],
        );
    }
    assert!(
        wait_until(Duration::from_secs(40), || get(
            envoy.port,
            "/fhir/Patient/1",
            &[("authorization", &bearer(&new_token))]
        )
        .status
            == 200),
        "rotated key never picked up"
    );
    assert!(
        jwks.requests() - before <= 3,
        "refetches were not rate-limited: {}",
        jwks.requests() - before
    );
}

/// Issue #12, item 5: a periodic JWKS refresh that brings the same keys keeps verified
/// identities cached (before, every refresh emptied the token cache, so every session paid a
/// signature check again and, during a forged-token flood, was shed with 429); a key the IdP
/// removes ends the identities it verified at the next refresh.
#[test]
fn a_jwks_refresh_keeps_cached_tokens_unless_their_key_left() {
    let keys = Keys::generate();
    let jwks = JwksServer::start(200, keys.jwks());
    let upstream = Upstream::start();
    let config = spec(
        json!({"cluster": "demo-idp", "path": "/jwks.json", "refreshSeconds": 10, "timeoutMs": 1000}),
        900,
    );
    let mut topology = Topology::new(
        upstream.port,
        vec![Filter {
            name: "authn",
            config: config.to_string(),
        }],
    );
    // One worker: the token cache is per worker VM.
    topology.concurrency = 1;
    topology.clusters.push(("demo-idp".into(), jwks.port));
    let envoy = Envoy::start(&topology);
    let t = keys.clinician("judy");
    let patient = |t: &str| {
        get(
            envoy.port,
            "/fhir/Patient/1",
            &[("authorization", &bearer(t))],
        )
    };
    assert!(
        wait_until(Duration::from_secs(15), || patient(&t).status == 200),
        "keys never arrived"
    );
    assert_eq!(patient(&t).status, 200);
    let hits = envoy.counter("wasmcustom.hipaa_authn.token_cache.hit");
    let misses = envoy.counter("wasmcustom.hipaa_authn.token_cache.miss");
    assert!(hits >= 1, "the repeat was not a hit");

    // The IdP serves the same keys again: wait for a refresh, then the token is still cached.
    let fetched = envoy.counter("wasmcustom.hipaa_authn.jwks.fetch_ok");
    assert!(
        wait_until(Duration::from_secs(25), || envoy
            .counter("wasmcustom.hipaa_authn.jwks.fetch_ok")
            > fetched),
        "no refresh"
    );
    for _ in 0..3 {
        assert_eq!(patient(&t).status, 200);
    }
    assert_eq!(
        envoy.counter("wasmcustom.hipaa_authn.token_cache.miss"),
        misses,
        "an unchanged JWKS refresh emptied the token cache"
    );
    assert_eq!(
        envoy.counter("wasmcustom.hipaa_authn.token_cache.hit"),
        hits + 3
    );

    // The IdP drops the key that signed `t` (a new set with other kids): at the next refresh
    // the cached identity ends.
    let rotated = Keys::generate();
    let mut set: Value = serde_json::from_str(&rotated.jwks()).unwrap();
    for k in set["keys"].as_array_mut().unwrap() {
        k["kid"] = json!(format!("{}-2", k["kid"].as_str().unwrap()));
    }
    jwks.set(200, set.to_string());
    assert!(
        wait_until(Duration::from_secs(25), || patient(&t).status == 401),
        "a removed key kept authenticating from the cache"
    );
    let r = patient(&t);
    assert_denied(&r, 401, "invalid_token", Some(&t));
}
