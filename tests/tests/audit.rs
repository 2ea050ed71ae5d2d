//! hipaa_audit.wasm in the real Envoy 1.40 (V8), chained audit → authn, delivering to the real
//! collector (`hipaa-mesh collector`, SQLite): exact counts, break-glass, client aborts, a
//! collector outage with fail-closed 503s and full recovery, a clean `audit verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::chain::{self, CLUSTER};
use hipaa_e2e::collector::{test_mac_key, Collector};
use hipaa_e2e::envoy::{Envoy, Filter, Topology};
use hipaa_e2e::http::{get, request, Response};
use hipaa_e2e::idp::{self, Keys, Upstream};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn spec(jwks: &str, max_buffered: u32, max_batch: u32) -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": {"inline": jwks}, "algorithms": ["RS256", "ES256", "EdDSA"]
            }],
            "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "PUT", "DELETE"]},
             "phi": true, "allowRoles": ["clinician", "nurse"],
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}, "softDeleteOnly": true},
            {"name": "psych-notes", "match": {"pathPrefix": "/psych/"}, "phi": true,
             "allowRoles": ["psychiatrist"], "patientFrom": {"query": "patient"}},
            {"name": "risk-model", "match": {"pathPrefix": "/ai/risk"}, "phi": true, "allowRoles": ["clinician"],
             "patientFrom": {"header": "x-patient-id"},
             "inference": {"modelHeader": "x-model-name", "versionHeader": "x-model-version"}}
        ],
        // Opted in (the default is deny): an unmatched path is PHI, authenticated and recorded.
        "unmatchedRoutes": "phi",
        "audit": {
            "collector": {"cluster": CLUSTER, "path": "/v1/records", "timeoutMs": 1000},
            "flushIntervalMs": 100, "maxBatch": max_batch, "maxBuffered": max_buffered
        }
    })
}

struct Stack {
    keys: Keys,
    collector: Collector,
    envoy: Envoy,
    _upstream: Option<Upstream>,
}

fn topology(
    keys: &Keys,
    collector: &Collector,
    upstream_port: u16,
    max_buffered: u32,
    max_batch: u32,
) -> Topology {
    chain::topology(
        &["audit", "authn"],
        &spec(&keys.jwks(), max_buffered, max_batch),
        collector,
        collector.port,
        upstream_port,
    )
}

fn stack(max_buffered: u32, max_batch: u32) -> Stack {
    stack_on(Collector::start(), max_buffered, max_batch)
}

fn stack_on(collector: Collector, max_buffered: u32, max_batch: u32) -> Stack {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let envoy = Envoy::start(&topology(
        &keys,
        &collector,
        upstream.port,
        max_buffered,
        max_batch,
    ));
    Stack {
        keys,
        collector,
        envoy,
        _upstream: Some(upstream),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn call(
    s: &Stack,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Response {
    let auth = token.map(bearer);
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    request(s.envoy.port, method, path, &headers, b"")
}

fn by(records: &[Value], pointer: &str) -> HashMap<String, usize> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for r in records {
        let key = match r.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            _ => "-".into(),
        };
        *m.entry(key).or_default() += 1;
    }
    m
}

fn assert_verify_clean(c: &Collector) {
    let (code, text) = c.verify();
    assert_eq!(code, 0, "audit verify is not clean:\n{text}");
}

#[test]
fn every_phi_access_and_every_denial_is_recorded_exactly_once() {
    every_access_recorded_once(stack(20_000, 50));
}

#[test]
fn every_phi_access_and_every_denial_is_recorded_exactly_once_on_postgresql() {
    every_access_recorded_once(stack_on(Collector::start_postgres(), 20_000, 50));
}

fn every_access_recorded_once(s: Stack) {
    let alice = s.keys.clinician("alice");
    let bob = s.keys.token(&[
        "--sub", "bob", "--roles", "nurse", "--amr", "pwd,otp", "--sid", "sid-bob",
    ]);
    let mut expected_allowed = 0usize;
    let mut expected_denied = 0usize;
    let mut ok = |r: Response, status: u16| {
        assert_eq!(r.status, status, "{}", r.body);
        if status < 400 {
            expected_allowed += 1;
        } else {
            expected_denied += 1;
        }
    };

    for _ in 0..3 {
        ok(call(&s, "GET", "/fhir/Patient/p1", Some(&alice), &[]), 200);
    }
    ok(call(&s, "PUT", "/fhir/Patient/p1", Some(&alice), &[]), 200);
    for _ in 0..2 {
        ok(call(&s, "GET", "/fhir/Patient/p2", Some(&bob), &[]), 200);
    }
    // Denials: hard delete (405), no token (401, with a spoofed subject), role (403).
    ok(
        call(&s, "DELETE", "/fhir/Patient/p1", Some(&alice), &[]),
        405,
    );
    for _ in 0..2 {
        ok(
            call(
                &s,
                "GET",
                "/fhir/Patient/p2",
                None,
                &[("x-hipaa-subject", "mallory")],
            ),
            401,
        );
    }
    ok(
        call(&s, "GET", "/psych/notes?patient=p3", Some(&bob), &[]),
        403,
    );
    // Break-glass: allowed past allowRoles, flagged.
    ok(
        call(
            &s,
            "GET",
            "/psych/notes?patient=p3",
            Some(&alice),
            &[("x-break-glass", "patient-emergency")],
        ),
        200,
    );
    // Inference, two model versions.
    for v in ["4.2.0", "4.2.0", "4.3.0"] {
        ok(
            call(
                &s,
                "POST",
                "/ai/risk",
                Some(&alice),
                &[
                    ("x-patient-id", "p4"),
                    ("x-model-name", "sepsis-risk"),
                    ("x-model-version", v),
                ],
            ),
            200,
        );
    }
    // Under `unmatchedRoutes: phi` an unmatched route is PHI: allowed and recorded, and denied
    // without a token.
    ok(call(&s, "GET", "/elsewhere", Some(&alice), &[]), 200);
    ok(call(&s, "GET", "/elsewhere", None, &[]), 401);
    // Public routes produce no record.
    for _ in 0..4 {
        assert_eq!(get(s.envoy.port, "/healthz", &[]).status, 200);
    }

    let total = expected_allowed + expected_denied;
    assert_eq!((expected_allowed, expected_denied), (11, 5));
    let all = s.collector.wait_for("", total, Duration::from_secs(20));
    assert_eq!(all.len(), total, "exactly one record per request: {all:#?}");
    let ids: HashSet<&str> = all
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), total, "no duplicates");
    assert!(
        all.iter().all(|r| r["action"]["path"] != "/healthz"),
        "a public route was recorded"
    );
    let decisions = by(&all, "/outcome/decision");
    assert_eq!(decisions.get("allow"), Some(&expected_allowed));
    assert_eq!(decisions.get("deny"), Some(&expected_denied));

    // Counts by patient, subject and model version, through the API and the CLI.
    let count = |q: &str| s.collector.records(q).len();
    assert_eq!(count("patient=p1"), 5);
    assert_eq!(count("patient=p2"), 4);
    assert_eq!(count("patient=p3"), 2);
    assert_eq!(count("patient=p4"), 3);
    assert_eq!(count("subject=alice"), 10);
    assert_eq!(count("subject=bob"), 3);
    assert_eq!(
        count("subject=mallory"),
        0,
        "a spoofed x-hipaa-subject reached the record"
    );
    assert_eq!(count("model=sepsis-risk&version=4.2.0"), 2);
    assert_eq!(count("model=sepsis-risk&version=4.3.0"), 1);
    assert_eq!(s.collector.query_cli(&["--patient", "p1"]).len(), 5);
    assert_eq!(
        s.collector
            .query_cli(&["--model", "sepsis-risk", "--version", "4.2.0"])
            .len(),
        2
    );

    // Record contents.
    let emergency = s.collector.records("emergency=true");
    assert_eq!(emergency.len(), 1);
    let e = &emergency[0];
    assert_eq!(e["emergency"]["reason"], "patient-emergency");
    assert_eq!(e["actor"]["subject"], "alice");
    assert_eq!(e["outcome"]["decision"], "allow");
    assert_eq!(e["action"]["route"], "psych-notes");

    let p1 = s.collector.records("patient=p1");
    let put = p1.iter().find(|r| r["action"]["method"] == "PUT").unwrap();
    assert_eq!(put["action"]["operation"], "write");
    let del = p1
        .iter()
        .find(|r| r["action"]["method"] == "DELETE")
        .unwrap();
    assert_eq!(del["action"]["operation"], "delete");
    assert_eq!(del["outcome"]["decision"], "deny");
    assert_eq!(del["outcome"]["status"], 405);
    assert_eq!(del["outcome"]["reason"], "hard_delete");
    let read = p1.iter().find(|r| r["action"]["method"] == "GET").unwrap();
    assert_eq!(read["actor"]["roles"], json!(["clinician"]));
    assert_eq!(read["actor"]["session"], "sid-alice");
    assert_eq!(read["actor"]["amr"], json!(["pwd", "otp"]));
    assert_eq!(
        read["resource"],
        json!({"patient": "p1", "type": "Patient"})
    );
    assert_eq!(read["source"]["ip"], "127.0.0.1");
    assert_eq!(read["outcome"]["status"], 200);
    assert!(read["outcome"]["bytes"].as_u64().unwrap() > 0);
    assert!(read["chain"]["mac"].as_str().unwrap().len() == 64);
    // Sealed in one pass (record v2): the MAC covers the digest of the record without its MAC,
    // and the MAC is the record's link (the next record's prev).
    assert_eq!(read["v"], 2);
    let ring = hipaa_core::audit::MacKeyRing::parse(&s.collector.mac_key).unwrap();
    let mac = read["chain"]["mac"].as_str().unwrap().to_string();
    assert_eq!(
        hipaa_core::audit::authenticate(&ring, read),
        Ok(hipaa_core::audit::ChainLink::Mac(mac))
    );

    let p2 = s.collector.records("patient=p2");
    let anonymous: Vec<&Value> = p2
        .iter()
        .filter(|r| r["outcome"]["status"] == 401)
        .collect();
    assert_eq!(anonymous.len(), 2);
    for r in anonymous {
        assert_eq!(r["actor"]["subject"], Value::Null);
        assert_eq!(r["outcome"]["reason"], "missing_token");
    }
    let inference = s.collector.records("patient=p4");
    assert!(inference.iter().all(
        |r| r["action"]["operation"] == "inference" && r["inference"]["model"] == "sepsis-risk"
    ));
    let unmatched: Vec<&Value> = all
        .iter()
        .filter(|r| r["action"]["path"] == "/elsewhere")
        .collect();
    assert_eq!(unmatched.len(), 2);
    assert!(unmatched
        .iter()
        .all(|r| r["action"]["route"] == Value::Null));

    // One chain-start per VM, and a clean verify.
    assert!(!s.collector.records("kind=chain-start").is_empty());
    assert!(
        s.collector.records("kind=integrity").is_empty(),
        "{:#?}",
        s.collector.records("kind=integrity")
    );
    assert_eq!(
        s.envoy.counter("wasmcustom.hipaa_audit.records.enqueued") as usize,
        total
    );
    assert!(s.envoy.counter("wasmcustom.hipaa_audit.records.acked") as usize >= total);
    assert!(s.envoy.counter("wasmcustom.hipaa_audit.spoofed_headers") >= 2);
    assert_verify_clean(&s.collector);
    assert!(
        !s.envoy.log().contains(&s.collector.mac_key),
        "the MAC key reached the log"
    );
}

/// An upstream that accepts, reads the request and answers only after `delay`.
fn slow_upstream(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            });
        }
    });
    port
}

#[test]
fn a_client_that_leaves_first_is_still_recorded() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let port = slow_upstream(Duration::from_secs(3));
    let envoy = Envoy::start(&topology(&keys, &collector, port, 20_000, 50));
    let s = Stack {
        keys,
        collector,
        envoy,
        _upstream: None,
    };
    let alice = s.keys.clinician("alice");

    let mut stream = hipaa_e2e::http::connect(s.envoy.port).unwrap();
    let req = format!(
        "GET /fhir/Patient/gone-1 HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {alice}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(stream); // before the upstream answers

    let records = s
        .collector
        .wait_for("patient=gone-1", 1, Duration::from_secs(20));
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["outcome"]["status"], 0, "{r:#}");
    assert_eq!(r["outcome"]["decision"], "allow");
    assert_eq!(r["actor"]["subject"], "alice");
    assert_verify_clean(&s.collector);
}

#[test]
fn collector_outage_fails_closed_while_full_and_loses_nothing() {
    let mut s = stack(5, 5);
    let alice = s.keys.clinician("alice");
    // Up: records flow.
    assert_eq!(
        call(&s, "GET", "/fhir/Patient/before", Some(&alice), &[]).status,
        200
    );
    s.collector
        .wait_for("patient=before", 1, Duration::from_secs(20));
    // Let every chain-start and the record be acknowledged before the outage.
    std::thread::sleep(Duration::from_millis(500));

    s.collector.stop();
    let mut passed = Vec::new();
    let mut refused = Vec::new();
    for i in 0..15 {
        let patient = format!("down-{i}");
        let r = call(
            &s,
            "GET",
            &format!("/fhir/Patient/{patient}"),
            Some(&alice),
            &[],
        );
        match r.status {
            200 => passed.push(patient),
            503 => {
                assert_eq!(r.json()["error"], "temporarily_unavailable", "{}", r.body);
                assert!(r.json()["request_id"]
                    .as_str()
                    .is_some_and(|id| !id.is_empty()));
                refused.push(patient);
            }
            other => panic!("unexpected status {other}: {}", r.body),
        }
    }
    assert_eq!(
        passed.len(),
        5,
        "the buffer holds maxBuffered records: passed {passed:?}"
    );
    assert_eq!(refused.len(), 10);
    // Public routes still pass; denials on PHI routes are refused too while full.
    assert_eq!(get(s.envoy.port, "/healthz", &[]).status, 200);
    assert_eq!(
        call(&s, "GET", "/fhir/Patient/down-anon", None, &[]).status,
        503
    );
    assert_eq!(
        s.envoy.counter("wasmcustom.hipaa_audit.buffer_full_503"),
        11
    );
    // The failed batches are retried (with backoff) while the collector is down.
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.envoy.counter("wasmcustom.hipaa_audit.batches.retried") < 1 {
        assert!(
            Instant::now() < deadline,
            "no batch was retried in 15 s of collector outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Back up: everything that was not refused arrives; requests flow again.
    s.collector.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(&s, "GET", "/fhir/Patient/after", Some(&alice), &[]);
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            Instant::now() < deadline,
            "still refusing 30 s after the collector came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    s.collector
        .wait_for("patient=after", 1, Duration::from_secs(20));
    for p in &passed {
        assert_eq!(
            s.collector.records(&format!("patient={p}")).len(),
            1,
            "{p} lost or duplicated"
        );
    }
    for p in refused
        .iter()
        .chain(std::iter::once(&"down-anon".to_string()))
    {
        assert_eq!(
            s.collector.records(&format!("patient={p}")).len(),
            0,
            "{p} was refused, not recorded"
        );
    }
    assert!(
        s.collector.records("kind=integrity").is_empty(),
        "{:#?}",
        s.collector.records("kind=integrity")
    );
    assert_verify_clean(&s.collector);
}

#[test]
fn a_missing_or_short_mac_key_refuses_to_start() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let mut t = topology(&keys, &collector, hipaa_e2e::free_port(), 100, 10);
    t.vm_env = Vec::new();
    let (code, log) = Envoy::start_expecting_failure(&t);
    assert_ne!(code, 0);
    assert!(
        log.contains("hipaa-audit") && log.contains("HIPAA_AUDIT_HMAC_KEY"),
        "{log}"
    );

    let short = test_mac_key();
    let short = &short[..short.len() - 2 * 8]; // 24 bytes
    t.vm_env = vec![("HIPAA_AUDIT_HMAC_KEY".into(), short.to_string())];
    let (code, log) = Envoy::start_expecting_failure(&t);
    assert_ne!(code, 0);
    assert!(log.contains("at least 32 bytes"), "{log}");
    assert!(
        !log.contains(short.split(':').nth(1).unwrap()),
        "the key reached the log"
    );
}

/// Issue #12 items 6 and 7 through the real Envoy: the patient id is recorded decoded (so a
/// query for 456 finds `%34%35%36`), a repeated or unreadable id is refused with 400 and
/// recorded, and a token without `auth_time` is refused on a PHI route with its own reason.
#[test]
fn patient_ids_are_decoded_or_refused_and_auth_time_is_required() {
    let s = stack(20_000, 50);
    let psych = s.keys.token(&[
        "--sub",
        "pat",
        "--roles",
        "psychiatrist",
        "--amr",
        "pwd,otp",
        "--sid",
        "sid-pat",
    ]);
    let alice = s.keys.clinician("alice");
    let no_auth_time = s.keys.token(&[
        "--sub",
        "carol",
        "--roles",
        "clinician",
        "--amr",
        "pwd,otp",
        "--sid",
        "sid-carol",
        "--no-auth-time",
    ]);
    // Percent-encoded: served, and recorded as the id the application reads.
    let r = call(
        &s,
        "GET",
        "/psych/notes?patient=%34%35%36",
        Some(&psych),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Repeated in the query (many frameworks serve the last one): refused.
    let r = call(
        &s,
        "GET",
        "/psych/notes?patient=456&patient=789",
        Some(&psych),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_request"), "{}", r.body);
    // Repeated as a header: refused.
    let r = call(
        &s,
        "GET",
        "/ai/risk",
        Some(&alice),
        &[("x-patient-id", "456"), ("x-patient-id", "789")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // No auth_time on a PHI route: no absolute logoff could be enforced, so refused.
    let r = call(&s, "GET", "/fhir/Patient/999", Some(&no_auth_time), &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.body.contains("insufficient_user_authentication"),
        "{}",
        r.body
    );

    let found = s
        .collector
        .wait_for("patient=456", 1, Duration::from_secs(10));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["outcome"]["decision"], "allow");
    assert_eq!(found[0]["actor"]["subject"], "pat");
    // Each refusal is recorded with its reason (whether or not the token was read first).
    let all = s.collector.wait_for("", 4, Duration::from_secs(10));
    let reasons = by(&all, "/outcome/reason");
    assert_eq!(reasons.get("patient_repeated"), Some(&2), "{all:#?}");
    assert_eq!(reasons.get("auth_time_missing"), Some(&1), "{all:#?}");
    for r in all
        .iter()
        .filter(|r| r["outcome"]["reason"] == "patient_repeated")
    {
        assert_eq!(r["outcome"]["status"], 400);
        assert_eq!(r["resource"]["patient"], Value::Null);
    }
    assert_verify_clean(&s.collector);
}

/// Issue #14: the detectors inside the real collector raise alerts, within seconds, from what
/// the real Envoy recorded — failed sign-ins from one source, one user reading many patients,
/// a break-glass access — and nothing for the near misses.
#[test]
fn detectors_raise_alerts_from_what_envoy_records() {
    let collector = Collector::start_detecting(
        "failedAuth: {threshold: 4, windowSeconds: 3600}\npatientVolume: {ceiling: 3, windowSeconds: 3600}\n",
    );
    let s = stack_on(collector, 20_000, 50);
    let alice = s.keys.clinician("alice");
    let bob = s.keys.token(&[
        "--sub", "bob", "--roles", "nurse", "--amr", "pwd,otp", "--sid", "sid-bob",
    ]);
    // A forged token, four times (from 127.0.0.1): a burst.
    for _ in 0..4 {
        let r = call(&s, "GET", "/fhir/Patient/p1", Some("not.a.token"), &[]);
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // alice reads four patients (above the ceiling of 3); bob reads three (not above).
    for p in ["p1", "p2", "p3", "p4"] {
        assert_eq!(
            call(&s, "GET", &format!("/fhir/Patient/{p}"), Some(&alice), &[]).status,
            200
        );
    }
    for p in ["p1", "p2", "p3", "p3"] {
        assert_eq!(
            call(&s, "GET", &format!("/fhir/Patient/{p}"), Some(&bob), &[]).status,
            200
        );
    }
    // One break-glass access.
    let r = call(
        &s,
        "GET",
        "/psych/notes?patient=p9",
        Some(&alice),
        &[("x-break-glass", "patient-emergency")],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let c = &s.collector;
    let bursts = c.wait_for_alerts("kind=failed_auth_burst", 1, Duration::from_secs(20));
    assert_eq!(bursts.len(), 1, "{bursts:?}");
    assert_eq!(bursts[0]["sourceIp"], "127.0.0.1");
    assert_eq!(bursts[0]["count"], 4);
    assert_eq!(bursts[0]["records"].as_array().unwrap().len(), 4);
    let volume = c.wait_for_alerts("kind=patient_volume", 1, Duration::from_secs(20));
    assert_eq!(
        volume.len(),
        1,
        "bob's three patients are not above the ceiling: {volume:?}"
    );
    assert_eq!(volume[0]["subject"], "alice");
    assert_eq!(volume[0]["count"], 4);
    let glass = c.wait_for_alerts("kind=break_glass", 1, Duration::from_secs(20));
    assert_eq!(glass.len(), 1, "{glass:?}");
    assert_eq!(glass[0]["patient"], "p9");
    assert_eq!(glass[0]["status"], "open");
    // Each alert names real records of the trail.
    let rid = glass[0]["records"][0].as_str().unwrap().to_string();
    let emergency = c.records("emergency=true");
    assert_eq!(emergency.len(), 1);
    assert_eq!(emergency[0]["requestId"], rid.as_str());
    // The alerts are in the signed ledger: verify checks them too.
    assert_verify_clean(c);
}

/// The single-filter root id `hipaa-audit` alone (audit without authn is a common
/// deployment), whatever `HIPAA_E2E_CHAIN` says: every request is recorded, with no identity —
/// audit alone believes neither the unverified token nor a client's `x-hipaa-subject` (it
/// removes the client's `x-hipaa-*` headers, so the upstream never sees them either).
#[test]
fn the_audit_root_id_alone_records_every_request_without_believing_the_client() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    let policy = spec(&keys.jwks(), 20_000, 50);
    let mut t = Topology::new(
        upstream.port,
        vec![Filter {
            name: "audit",
            config: policy.to_string(),
        }],
    );
    t.clusters.push((CLUSTER.to_string(), collector.port));
    t.vm_env = collector.vm_env();
    let envoy = Envoy::start(&t);
    let token = keys.clinician("alice");
    let r = request(
        envoy.port,
        "GET",
        "/fhir/Patient/solo-1",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-hipaa-subject", "mallory"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed_header("x-hipaa-subject"), None);
    let r = get(envoy.port, "/fhir/Patient/solo-2", &[]);
    assert_eq!(r.status, 200, "audit alone refuses nothing: {}", r.body);
    let records = collector.wait_for("", 2, Duration::from_secs(20));
    assert_eq!(records.len(), 2, "{records:#?}");
    for p in ["solo-1", "solo-2"] {
        let rec = records
            .iter()
            .find(|r| r["resource"]["patient"] == p)
            .unwrap_or_else(|| panic!("no record for {p}: {records:#?}"));
        assert_eq!(rec["outcome"]["decision"], "allow", "{rec:#}");
        assert_eq!(rec["outcome"]["status"], 200, "{rec:#}");
        assert_eq!(rec["actor"]["subject"], Value::Null, "{rec:#}");
    }
    assert!(envoy.counter("wasmcustom.hipaa_audit.spoofed_headers") >= 1);
    assert_eq!(envoy.stat("wasm.hipaa-audit.vm_reload"), 0);
    assert!(
        http_stats(&envoy).contains("wasm.hipaa-audit."),
        "the hipaa-audit VM is not there"
    );
    assert_verify_clean(&collector);
}

fn http_stats(envoy: &Envoy) -> String {
    get(envoy.admin_port, "/stats?filter=wasm", &[]).body
}
