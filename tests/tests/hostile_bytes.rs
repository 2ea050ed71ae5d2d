//! Hostile bytes through the real Envoy 1.40 (V8): header values carrying obs-text (bytes
//! 0x80–0xFF, which HTTP/1.1 allows and Envoy forwards), on public, PHI and unmatched routes of
//! the whole chain (audit → authn → transport), on one worker (`--concurrency 1`). No filter VM
//! may fail on them (the proxy-wasm SDK's string getters unwrap UTF-8 and used to panic: one
//! request then turned every later request of the worker into a 503 under FAIL_CLOSED), and a
//! valid request afterwards on the same worker must be served as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::chain;
use hipaa_e2e::collector::Collector;
use hipaa_e2e::envoy::Envoy;
use hipaa_e2e::faulty::static_server;
use hipaa_e2e::http::{connect, parse_response, read_response, Response};
use hipaa_e2e::idp::Keys;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn stack() -> (Keys, Collector, Envoy) {
    let keys = Keys::generate();
    let collector = Collector::start();
    // A byte-tolerant upstream (answers every request 200), so a 5xx can only come from Envoy
    // or a filter.
    let upstream = static_server("{\"ok\":true}".to_string());
    let spec = json!({
        "identity": {
            "providers": [chain::provider(&keys.jwks())],
            "breakGlass": {"header": "x-break-glass", "reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "PUT"]},
             "phi": true, "allowRoles": ["clinician"],
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": chain::audit(1000, 100, 100, 20_000),
        "transport": {"minTlsVersion": "TLSv1.2", "requireMtls": true}
    });
    let mut t = chain::topology(
        &["audit", "authn", "transport"],
        &spec,
        &collector,
        collector.port,
        upstream,
    );
    // One worker: every request below reaches the same VM(s).
    t.concurrency = 1;
    let envoy = Envoy::start(&t);
    (keys, collector, envoy)
}

/// One request written byte for byte (`head` is the request line and headers, without the
/// blank line); None when Envoy closed the connection without an answer.
fn raw(port: u16, head: &[u8]) -> Option<Response> {
    let mut stream = connect(port).unwrap();
    let mut req = head.to_vec();
    req.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    stream.write_all(&req).unwrap();
    let bytes = read_response(&mut stream).ok()?;
    parse_response(&bytes).ok()
}

fn get(path: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut head = b"GET ".to_vec();
    head.extend_from_slice(path);
    head.extend_from_slice(b" HTTP/1.1\r\nhost: localhost");
    for (k, v) in headers {
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(k);
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
    }
    head
}

/// Envoy's Wasm runtime counters that say a VM or plugin failed.
fn wasm_failures(envoy: &Envoy) -> Vec<(String, u64)> {
    let stats = hipaa_e2e::http::get(envoy.admin_port, "/stats?filter=wasm", &[]);
    stats
        .body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| !k.starts_with("wasmcustom."))
        .filter(|(k, _)| k.contains("fail") || k.contains("crash") || k.contains("reload"))
        .filter_map(|(k, v)| v.trim().parse::<u64>().ok().map(|v| (k.to_string(), v)))
        .collect()
}

#[test]
fn obs_text_bytes_in_headers_path_and_query_never_fail_a_vm_and_the_worker_keeps_serving() {
    let (keys, _collector, mut envoy) = stack();
    let token = format!("Bearer {}", keys.clinician("alice"));
    let bearer_obs = b"Bearer eyJ\xe9.x.y".to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "public route, obs-text value",
            get(b"/healthz", &[(b"x-note", b"caf\xe9")]),
        ),
        (
            "public route, every high byte",
            get(
                b"/healthz",
                &[(b"x-note", &(0x80u8..=0xff).collect::<Vec<u8>>())],
            ),
        ),
        (
            "PHI route, obs-text token",
            get(b"/fhir/Patient/hb-1", &[(b"authorization", &bearer_obs)]),
        ),
        (
            "PHI route, valid token, obs-text request id and note",
            get(
                b"/fhir/Patient/hb-2",
                &[
                    (b"authorization", token.as_bytes()),
                    (b"x-request-id", b"\x80\x81\xfe\xff"),
                    (b"x-note", b"\xc3\x28"),
                ],
            ),
        ),
        (
            "PHI route, obs-text break-glass reason",
            get(
                b"/fhir/Patient/hb-3",
                &[
                    (b"authorization", token.as_bytes()),
                    (b"x-break-glass", b"urgent \xff"),
                ],
            ),
        ),
        (
            "unmatched route, obs-text value",
            get(b"/nowhere", &[(b"x-note", b"\xff")]),
        ),
        (
            "spoofed reserved header with obs-text",
            get(b"/healthz", &[(b"x-hipaa-subject", b"\xe9admin")]),
        ),
        ("obs-text in the path", get(b"/fhir/Patient/caf\xe9", &[])),
        ("obs-text in the query", get(b"/healthz?q=caf\xe9", &[])),
        (
            "obs-text authority",
            b"GET /healthz HTTP/1.1\r\nhost: caf\xe9".to_vec(),
        ),
        (
            "obs-text header name",
            get(b"/healthz", &[(b"x-caf\xe9", b"1")]),
        ),
    ];
    for (name, head) in &cases {
        let r = raw(envoy.port, head);
        let Some(r) = r else {
            panic!("{name}: no answer (the VM failed?)\n{}", envoy.log());
        };
        assert!(
            r.status < 500,
            "{name}: {} {} (a filter VM failed?)",
            r.status,
            r.body
        );
        // Never a reflected byte: the denial bodies are fixed JSON.
        assert!(!r.body.contains('\u{fffd}'), "{name}: {}", r.body);
    }
    // Same worker, same VMs: a valid request is served as before.
    let r = raw(envoy.port, &get(b"/healthz", &[])).expect("an answer");
    assert_eq!(r.status, 200, "after the hostile bytes: {}", r.body);
    let r = raw(
        envoy.port,
        &get(
            b"/fhir/Patient/hb-9",
            &[(b"authorization", token.as_bytes())],
        ),
    )
    .expect("an answer");
    if envoy.tls {
        // The combined filter over mTLS: every stage lets it through to the upstream.
        assert_eq!(r.status, 200, "{}", r.body);
    } else {
        // Authn lets it through; transport refuses plaintext on a PHI route (not a 503).
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.header("x-hipaa-denial"), Some("plaintext_refused"));
    }
    assert!(envoy.healthy(), "Envoy died:\n{}", envoy.log());
    let failures = wasm_failures(&envoy);
    let vm = if envoy.tls {
        "hipaa-mesh"
    } else {
        "hipaa-authn"
    };
    assert!(
        failures
            .iter()
            .any(|(k, _)| *k == format!("wasm.{vm}.vm_reload")),
        "Envoy's Wasm VM stats are missing: {failures:?}"
    );
    assert!(
        failures.iter().all(|(_, v)| *v == 0),
        "Wasm failures: {failures:?}"
    );
    let log = envoy.log();
    assert!(
        !log.contains("panicked")
            && !log.contains("Function: proxy_on")
            && !log.contains("Uncaught RuntimeError"),
        "a filter VM failed:\n{log}"
    );
}

/// One raw request to the collector: (status, body); None when it closed without an answer.
fn collector_raw(
    port: u16,
    method: &str,
    target: &str,
    body: &[u8],
    token: Option<&str>,
) -> Option<Response> {
    let auth = token.map_or(String::new(), |t| format!("\r\nauthorization: Bearer {t}"));
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: collector\r\ncontent-type: application/json\r\ncontent-length: {}{auth}",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    head.extend_from_slice(body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(&head).ok()?;
    let bytes = read_response(&mut stream).ok()?;
    parse_response(&bytes).ok()
}

/// A record shaped like an access record whose `time` is hostile: ingest parses the time before
/// it checks the MAC, so no key is needed to reach the parser.
fn record_with_time(time: &str) -> serde_json::Value {
    json!({
        "v": 1, "kind": "access", "time": time, "requestId": "hostile",
        "chain": {"id": "hostile-chain", "seq": 1, "prev": "00", "keyId": "e2e"},
        "mac": "00"
    })
}

#[test]
fn hostile_query_parameters_and_ingest_bodies_are_refused_and_the_collector_keeps_serving() {
    let collector = Collector::start();
    let port = collector.port;
    let reader = collector.reader_token();
    let alive = |what: &str| {
        let r = collector_raw(port, "GET", "/v1/records?limit=1", b"", Some(&reader))
            .unwrap_or_else(|| panic!("after {what}: the collector is gone\n{}", collector.log()));
        assert_eq!(r.status, 200, "after {what}: {}", r.body);
    };
    let queries = [
        // `+0é00`: a non-ASCII offset (the time parser sliced it by byte index).
        "from=2026-01-01T00:00:00%2B0%C3%A900",
        "to=2026-01-01T00:00:00-%C3%A9:00",
        "from=2026-01-01T%C3%A9%C3%A9:00:00Z",
        "from=2026-01-01T00:00:00.%C3%A9Z",
        "from=%C3%A9026-01-01",
        "from=2026-01-0%C3%A9",
        "from=2026-01-01T00:00:0%C3%A9Z",
        "from=%FF%FE",
        "from=%",
        "from=%+1",
        "from=%C3",
        "patient=%C3%28",
        "limit=%C3%A9",
        "kind=%E9",
    ];
    for q in queries {
        let target = format!("/v1/records?{q}");
        // With the auditor's credential: the query parser is reached (without it, a 401 first).
        let r = collector_raw(port, "GET", &target, b"", Some(&reader))
            .unwrap_or_else(|| panic!("{q}: no answer; the collector died\n{}", collector.log()));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        alive(q);
    }
    let mut bodies: Vec<(String, Vec<u8>)> = vec![
        (
            "not UTF-8".into(),
            b"[{\"v\":1,\"time\":\"\xff\xfe\"}]".to_vec(),
        ),
        ("not JSON".into(), b"\xc3\x28garbage".to_vec()),
        (
            "truncated JSON".into(),
            b"[{\"v\":1,\"time\":\"2026".to_vec(),
        ),
        ("deep nesting".into(), "[".repeat(100_000).into_bytes()),
    ];
    for time in [
        "2026-01-01T00:00:00+0é00",
        "2026-01-01T00:00:00-é:00",
        "2026-01-01Té0:00:00Z",
        "2026-01-01T00:00:00.éZ",
        "2026-01-0é",
        "é026-01-01",
        "2026-01-01T00:00:00+00:0é",
    ] {
        let body = serde_json::to_vec(&json!([record_with_time(time)])).unwrap();
        bodies.push((format!("record time {time}"), body));
    }
    for (what, body) in &bodies {
        let r = collector_raw(port, "POST", "/v1/records", body, None).unwrap_or_else(|| {
            panic!("{what}: no answer; the collector died\n{}", collector.log())
        });
        // Not a record batch: 400. A batch whose record is malformed: taken, and the record
        // kept as an integrity record (never a 5xx, never a dead collector).
        assert!(
            r.status == 400 || r.status == 200,
            "{what}: {} {}",
            r.status,
            r.body
        );
        alive(what);
    }
    assert!(
        !collector.log().contains("panicked"),
        "the collector panicked:\n{}",
        collector.log()
    );
}
