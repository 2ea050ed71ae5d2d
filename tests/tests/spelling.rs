//! Issue #12, item 2: authorization does not depend on how a request is spelled. The same
//! resource under every spelling — an unlisted or lower-case method (HTTP/2), `;` path
//! parameters, `%2e`, `//`, letter case, a trailing slash, the bare collection path — through
//! the real Envoy 1.40 (V8) with audit → authn delivering to the real collector, against the
//! strictest route (a VIP record, one role) and the weakest (a public probe). Each request
//! either gets its route's own checks or is refused, is never answered by the upstream (which
//! echoes what it receives) when refused, and every refusal is recorded with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::chain::{self, Stack};
use hipaa_e2e::curl::{curl, Reply};
use hipaa_e2e::idp::{self, Keys};
use serde_json::{json, Value};
use std::time::Duration;

/// The issue's routes, with `unmatchedRoutes` left at its default.
fn spec() -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": {"inline": ""}, "algorithms": ["RS256", "ES256", "EdDSA"]
            }],
            "sharedAccounts": {"denySubjects": ["admin", "shared"]},
            "mfa": {"requiredForRoles": []}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
            {"name": "vip-record", "match": {"pathPrefix": "/fhir/Patient/vip/", "methods": ["GET"]},
             "phi": true, "allowRoles": ["psychiatrist"],
             "patientFrom": {"pathTemplate": "/fhir/Patient/vip/{patient}"}},
            {"name": "patient-record",
             "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "PUT", "POST", "DELETE"]},
             "phi": true, "allowRoles": ["clinician", "nurse"], "softDeleteOnly": true,
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": chain::audit(1000, 100, 100, 20_000)
    })
}

fn stack() -> Stack {
    Stack::start(
        &["audit", "authn"],
        |keys| {
            let mut policy = spec();
            policy["identity"]["providers"][0]["jwks"]["inline"] = json!(keys.jwks());
            policy
        },
        |_| {},
        |_| {},
    )
}

fn user(keys: &Keys, sub: &str, role: &str) -> String {
    keys.token(&[
        "--sub",
        sub,
        "--roles",
        role,
        "--amr",
        "pwd,otp",
        "--sid",
        &format!("sid-{sub}"),
    ])
}

/// One request with curl, the path exactly as written (`--path-as-is`), over HTTP/1.1 or
/// HTTP/2: over mTLS (ALPN h2) when the listener terminates TLS, else without TLS
/// (`--http2-prior-knowledge`, as a mesh peer speaking h2c would).
fn send(port: u16, h2: bool, method: &str, path: &str, token: Option<&str>) -> Reply {
    let (base, tls_args) = hipaa_e2e::curl::base(port);
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("authorization: Bearer {t}"));
    let mut args: Vec<&str> = vec!["--path-as-is"];
    args.extend(tls_args.iter().map(String::as_str));
    if h2 {
        args.push(if tls_args.is_empty() {
            "--http2-prior-knowledge"
        } else {
            "--http2"
        });
    }
    if method == "HEAD" {
        args.push("--head");
    } else {
        args.extend(["-X", method]);
    }
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    args.push(&url);
    curl(&args).unwrap_or_else(|e| panic!("{method} {path}: curl failed: {e:?}"))
}

/// What the upstream received, if the request reached it (its echo is the body).
fn reached_upstream(r: &Reply) -> bool {
    serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b.get("method").is_some())
}

struct Refusal {
    h2: bool,
    method: &'static str,
    path: String,
    token: &'static str,
    status: u16,
    error: &'static str,
    reason: &'static str,
}

#[test]
fn every_spelling_of_a_resource_gets_its_routes_checks_or_a_recorded_refusal() {
    let s = stack();
    let port = s.envoy.port;
    let nurse = user(&s.keys, "nina", "nurse");
    let billing = user(&s.keys, "bill", "billing");
    let psych = user(&s.keys, "pia", "psychiatrist");
    let token = |who: &str| match who {
        "nurse" => nurse.as_str(),
        "billing" => billing.as_str(),
        _ => psych.as_str(),
    };

    // The ordinary spellings work: the strict route for its role, the weak route for its own.
    let r = send(port, false, "GET", "/fhir/Patient/vip/v-ok", Some(&psych));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(reached_upstream(&r));
    let r = send(port, true, "GET", "/fhir/Patient/p-ok", Some(&nurse));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = send(port, false, "GET", "/healthz", None);
    assert_eq!(r.status, 200);

    let mut cases: Vec<Refusal> = Vec::new();
    let mut add = |h2, method, path: String, token, status, error, reason| {
        cases.push(Refusal {
            h2,
            method,
            path,
            token,
            status,
            error,
            reason,
        })
    };
    // Methods the patient route does not list: a 405 with `Allow`, whoever asks (the
    // billing user's PATCH reached the app through `unmatchedRoutes: phi`).
    for (i, m) in ["PATCH", "HEAD", "OPTIONS", "TRACE"]
        .into_iter()
        .enumerate()
    {
        for (who, h2) in [("billing", false), ("nurse", true)] {
            let path = format!("/fhir/Patient/m{i}-{who}");
            add(
                h2,
                m,
                path,
                who,
                405,
                "method_not_allowed",
                "method_not_allowed",
            );
        }
        let path = format!("/fhir/Patient/vip/m{i}");
        add(
            false,
            m,
            path,
            "psych",
            405,
            "method_not_allowed",
            "method_not_allowed",
        );
    }
    // HTTP/2 lower-case methods (Envoy's HTTP/1.1 parser refuses them, its HTTP/2 codec
    // forwards them): `delete` on the soft-delete-only route, `get` on the VIP route.
    for (i, (m, path, who)) in [
        ("delete", "/fhir/Patient/lc-1", "nurse"),
        ("Delete", "/fhir/Patient/lc-2", "nurse"),
        ("get", "/fhir/Patient/vip/lc-3", "nurse"),
        ("patch", "/fhir/Patient/lc-4", "billing"),
        ("get", "/healthz", "billing"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = if path == "/healthz" {
            path.to_string()
        } else {
            format!("{path}-{i}")
        };
        add(
            true,
            m,
            path,
            who,
            400,
            "invalid_request",
            "method_not_canonical",
        );
    }
    // `;` path parameters (`..;` is resolved by Envoy 1.40's normalize_path, see below).
    for (path, h2) in [
        ("/fhir/Patient/sc-4;jsessionid=1", false),
        ("/fhir/Patient/sc-4;jsessionid=1", true),
        ("/fhir/Patient;v=1/sc-5", false),
        ("/healthz;x=1", false),
        ("/fhir/Patient/vip/sc-6;v=1", true),
    ] {
        add(
            h2,
            "GET",
            path.to_string(),
            "nurse",
            400,
            "invalid_request",
            "path_parameter",
        );
    }
    // Letter case: a case-folding server serves the VIP record for these.
    for path in [
        "/fhir/Patient/VIP/case-1",
        "/fhir/patient/vip/case-2",
        "/FHIR/Patient/vip/case-3",
        "/HEALTHZ",
    ] {
        add(
            false,
            "GET",
            path.to_string(),
            "nurse",
            400,
            "invalid_request",
            "path_not_canonical",
        );
    }
    // A path no route covers: refused by default (least privilege), with a token or without.
    for (path, who) in [
        ("/fhir/Observation/obs-1", "nurse"),
        ("/fhir/Patient?name=smith", "nurse"),
        ("/admin/export", "billing"),
    ] {
        add(
            false,
            "GET",
            path.to_string(),
            who,
            403,
            "access_denied",
            "route_denied",
        );
    }

    let mut wrong = Vec::new();
    for c in &cases {
        let r = send(port, c.h2, c.method, &c.path, Some(token(c.token)));
        let what = format!(
            "{} {} (h2: {}, {}): {} {}",
            c.method,
            c.path,
            c.h2,
            c.token,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if reached_upstream(&r) {
            wrong.push(format!("reached the upstream: {what}"));
            continue;
        }
        if r.status != c.status {
            wrong.push(format!("expected {}: {what}", c.status));
            continue;
        }
        if c.method != "HEAD" && r.json()["error"] != c.error {
            wrong.push(format!("expected error {}: {what}", c.error));
        }
        if c.status == 405 {
            let allow = r.header("allow").unwrap_or_default().to_string();
            let expected = if c.path.contains("/vip/") {
                "GET"
            } else {
                "GET, PUT, POST"
            };
            if allow != expected {
                wrong.push(format!("Allow `{allow}`, expected `{expected}`: {what}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // An unlisted method on the VIP prefix does not escape to the broader patient route.
    let r = send(port, false, "PUT", "/fhir/Patient/vip/esc-1", Some(&nurse));
    assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("allow"), Some("GET"));

    // Spellings Envoy normalises before any filter: each arrives as the canonical path and
    // gets the strict route's role check (the nurse is refused, the psychiatrist served).
    // Envoy 1.40 resolves `..;` like `..` (as Tomcat does); core refuses `..;` itself
    // (`path_parameter`) for a proxy that would not.
    for (path, h2) in [
        ("/fhir/Patient/..;/Patient/vip/n-7", false),
        ("/fhir/Patient/..;/Patient/vip/n-8", true),
        ("/fhir/Patient/x/..;a=b/vip/n-9", false),
        ("/fhir/Patient/x/../vip/n-1", false),
        ("/fhir/Patient/%2e%2e/Patient/vip/n-2", false),
        ("/fhir/Patient/%2E%2E/Patient/vip/n-3", true),
        ("/fhir/Patient/./vip/n-4", false),
        ("/fhir/Patient//vip/n-5", false),
        ("/fhir//Patient/vip/n-6", true),
    ] {
        let r = send(port, h2, "GET", path, Some(&nurse));
        assert_eq!(
            r.status,
            403,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!reached_upstream(&r), "{path}");
        let r = send(port, h2, "GET", path, Some(&psych));
        assert_eq!(r.status, 200, "{path}");
        let echoed = serde_json::from_slice::<Value>(&r.body).unwrap();
        assert!(
            echoed["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/fhir/Patient/vip/n-")),
            "{path}: the upstream got {echoed}"
        );
    }

    // Every refusal is recorded as a denial with its reason and the spelling it came in.
    let expected_denials = cases.len() + 9 + 1;
    let records = s
        .collector
        .wait_for("", expected_denials + 8, Duration::from_secs(30));
    let denials: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "access" && r["outcome"]["decision"] == "deny")
        .collect();
    let mut missing = Vec::new();
    for c in &cases {
        let found = denials.iter().any(|r| {
            r["action"]["method"] == c.method
                && r["action"]["path"] == c.path.as_str()
                && r["outcome"]["reason"] == c.reason
                && r["outcome"]["status"] == u64::from(c.status)
        });
        if !found {
            missing.push(format!("{} {} {}", c.method, c.path, c.reason));
        }
    }
    assert!(
        missing.is_empty(),
        "refusals without their record:\n{}\nrecords: {denials:#?}",
        missing.join("\n")
    );
    let role_refusals = denials
        .iter()
        .filter(|r| r["outcome"]["reason"] == "role_not_allowed")
        .count();
    assert_eq!(role_refusals, 9, "{denials:#?}");
    let (code, text) = s.collector.verify();
    assert_eq!(code, 0, "audit verify:\n{text}");
}
