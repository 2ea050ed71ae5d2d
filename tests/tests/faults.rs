//! Fault injection through the real Envoy 1.40 (V8) with audit → authn and the real collector:
//! a collector that answers 500 / 503, answers garbage, hangs up before or after committing, is
//! slower than the call timeout, is killed and restarted on the same SQLite file, loses its
//! PostgreSQL backends; an Envoy killed with records in memory; the JWKS endpoint hanging up,
//! slow or not speaking HTTP; a filter VM that traps, under each Envoy `failure_policy`.
//!
//! The accounting is exact: every request's id (from the echo or the denial body) is compared
//! with what the collector stores — nothing lost, nothing twice — and `audit verify` is clean.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::chain;
use hipaa_e2e::collector::Collector;
use hipaa_e2e::envoy::{Envoy, Topology};
use hipaa_e2e::faulty::{static_server, trap_module, EditedEnvoy, FaultyProxy, Mode};
use hipaa_e2e::http::{request, try_request, Response};
use hipaa_e2e::idp::{self, Keys, Upstream};
use hipaa_e2e::TempDir;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const TIMEOUT_MS: u64 = 500;

fn spec(jwks: Value, max_buffered: u32) -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": jwks, "algorithms": ["RS256", "ES256", "EdDSA"]
            }]
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "allowRoles": ["clinician"], "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": chain::audit(TIMEOUT_MS, 100, 10, max_buffered)
    })
}

fn topology(policy: &Value, collector: &Collector, collector_port: u16, upstream: u16) -> Topology {
    chain::topology(
        &["audit", "authn"],
        policy,
        collector,
        collector_port,
        upstream,
    )
}

fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the client saw: request id -> (patient, status).
#[derive(Default)]
struct Ledger {
    sent: BTreeMap<String, (String, u16)>,
    n: usize,
}

impl Ledger {
    /// One PHI request on a fresh patient id; every third without a token (a recorded denial).
    fn send(&mut self, port: u16, token: &str, label: &str) -> Response {
        self.n += 1;
        let patient = format!("{label}-{}", self.n);
        let auth = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> = if self.n.is_multiple_of(3) {
            vec![]
        } else {
            vec![("authorization", auth.as_str())]
        };
        let r = request(
            port,
            "GET",
            &format!("/fhir/Patient/{patient}"),
            &headers,
            b"",
        );
        let id = request_id(&r);
        self.sent.insert(id, (patient, r.status));
        r
    }

    /// The requests that must be recorded (all but the audit filter's own 503s).
    fn expected(&self) -> BTreeSet<String> {
        self.sent
            .iter()
            .filter(|(_, (_, status))| *status != 503)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn request_id(r: &Response) -> String {
    let id = if r.status == 200 {
        r.echoed_header("x-request-id")
    } else {
        r.json()["request_id"].as_str().map(String::from)
    };
    id.filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no request id in {} {}", r.status, r.body))
}

/// Every access record the collector stores. A query on a database connection that was cut
/// (PostgreSQL backends terminated) answers 503 once while the worker reconnects: asked again.
fn stored(c: &Collector) -> Vec<Value> {
    for _ in 0..20 {
        let r = c.get("/v1/records?limit=10000");
        match r.status {
            200 => return r.json().as_array().unwrap().clone(),
            503 => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("GET /v1/records: {other} {}", r.body),
        }
    }
    panic!("the collector kept answering 503 to a query");
}

/// Waits until every expected request id is stored, then checks: exactly those, once each,
/// with the status the client saw; no integrity finding; `audit verify` clean.
fn stored_kind(c: &Collector, kind: &str) -> Vec<Value> {
    for _ in 0..20 {
        let r = c.get(&format!("/v1/records?kind={kind}&limit=10000"));
        if r.status == 200 {
            return r.json().as_array().unwrap().clone();
        }
        assert_eq!(r.status, 503, "{}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the collector kept answering 503 to a query");
}

fn assert_nothing_lost(c: &Collector, ledger: &Ledger, timeout: Duration) {
    let expected = ledger.expected();
    let deadline = Instant::now() + timeout;
    loop {
        let ids: BTreeSet<String> = stored(c)
            .iter()
            .filter_map(|r| r["requestId"].as_str().map(String::from))
            .collect();
        if expected.is_subset(&ids) {
            break;
        }
        let missing: Vec<_> = expected.difference(&ids).collect();
        assert!(
            Instant::now() < deadline,
            "{} record(s) never arrived: {missing:?}",
            missing.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700)); // late duplicates would show
    let all = stored(c);
    let mut seen = BTreeMap::new();
    for r in &all {
        let id = r["requestId"].as_str().unwrap().to_string();
        assert!(
            seen.insert(id.clone(), r.clone()).is_none(),
            "stored twice: {id}"
        );
    }
    let ids: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        ids, expected,
        "stored records differ from the requests sent"
    );
    for (id, (patient, status)) in &ledger.sent {
        if let Some(r) = seen.get(id) {
            assert_eq!(r["resource"]["patient"], patient.as_str(), "{r:#}");
            assert_eq!(r["outcome"]["status"], *status, "{r:#}");
        }
    }
    let integrity = stored_kind(c, "integrity");
    assert!(integrity.is_empty(), "integrity findings: {integrity:#?}");
    let (code, text) = c.verify();
    assert_eq!(code, 0, "audit verify:\n{text}");
}

struct ProxiedStack {
    keys: Keys,
    collector: Collector,
    proxy: FaultyProxy,
    envoy: Envoy,
    _upstream: Upstream,
}

fn proxied_stack(collector: Collector) -> ProxiedStack {
    proxied_stack_buffering(collector, 20_000)
}

fn proxied_stack_buffering(collector: Collector, max_buffered: u32) -> ProxiedStack {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let proxy = FaultyProxy::start(collector.port, Mode::Pass);
    let policy = spec(json!({"inline": keys.jwks()}), max_buffered);
    let envoy = Envoy::start(&topology(&policy, &collector, proxy.port, upstream.port));
    ProxiedStack {
        keys,
        collector,
        proxy,
        envoy,
        _upstream: upstream,
    }
}

#[test]
fn a_misbehaving_collector_5xx_garbage_hangups_and_slowness_lose_nothing() {
    let s = proxied_stack(Collector::start());
    let token = s.keys.clinician("alice");
    let mut ledger = Ledger::default();
    let phases = [
        ("status-500", Mode::Status(500)),
        ("status-503", Mode::Status(503)),
        ("status-404", Mode::Status(404)),
        ("garbage", Mode::Garbage),
        ("hangup", Mode::Hangup),
        // Stored and committed, but the answer is lost: the batch is resent and the collector
        // acknowledges the duplicates without storing them twice.
        ("hangup-after-commit", Mode::HangupAfterForward),
        // Slower than the call timeout: Envoy gives up, the late batch still lands, the retry
        // is a duplicate.
        ("slow", Mode::Slow(Duration::from_millis(3 * TIMEOUT_MS))),
        ("ok-slow", Mode::Slow(Duration::from_millis(TIMEOUT_MS / 5))),
    ];
    for (label, mode) in phases {
        let retried = s.envoy.counter("wasmcustom.hipaa_audit.batches.retried");
        s.proxy.set(mode.clone());
        for _ in 0..4 {
            let r = ledger.send(s.envoy.port, &token, label);
            assert!(
                matches!(r.status, 200 | 401),
                "{label}: {} {}",
                r.status,
                r.body
            );
        }
        if !matches!(mode, Mode::Slow(d) if d < Duration::from_millis(TIMEOUT_MS)) {
            poll(
                &format!("{label}: a batch meets the fault"),
                Duration::from_secs(15),
                || s.envoy.counter("wasmcustom.hipaa_audit.batches.retried") > retried,
            );
        }
        s.proxy.set(Mode::Pass);
        assert_nothing_lost(&s.collector, &ledger, Duration::from_secs(30));
    }
    assert_eq!(ledger.sent.len(), 32);
    assert!(s.envoy.counter("wasmcustom.hipaa_audit.batches.retried") >= 7);
    assert_eq!(s.envoy.counter("wasmcustom.hipaa_audit.records.dropped"), 0);
    assert_eq!(s.envoy.counter("wasmcustom.hipaa_audit.buffer_full_503"), 0);
    assert!(
        s.envoy.log().contains("retrying in"),
        "a delivery failure was not logged"
    );
}

#[test]
fn a_collector_answering_500_fails_closed_once_the_buffer_is_full_and_loses_nothing() {
    let s = proxied_stack_buffering(Collector::start(), 10);
    let token = s.keys.clinician("ivy");
    let mut ledger = Ledger::default();
    ledger.send(s.envoy.port, &token, "up");
    assert_nothing_lost(&s.collector, &ledger, Duration::from_secs(30));
    s.proxy.set(Mode::Status(500));
    let mut statuses = Vec::new();
    for _ in 0..16 {
        let r = ledger.send(s.envoy.port, &token, "full");
        if r.status == 503 {
            assert_eq!(r.json()["error"], "temporarily_unavailable", "{}", r.body);
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        statuses.push(r.status);
    }
    // maxBuffered (10) records are admitted, then every PHI request is refused, never passed
    // unaudited.
    let admitted = statuses.iter().filter(|s| **s != 503).count();
    assert_eq!(admitted, 10, "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(s.envoy.counter("wasmcustom.hipaa_audit.buffer_full_503"), 6);
    s.proxy.set(Mode::Pass);
    poll("requests admitted again", Duration::from_secs(30), || {
        ledger.send(s.envoy.port, &token, "after").status != 503
    });
    // Every admitted request recorded once; the 503s (counted in stats) are not recorded.
    assert_nothing_lost(&s.collector, &ledger, Duration::from_secs(30));
}

#[test]
fn a_collector_killed_mid_stream_and_restarted_on_the_same_sqlite_file_loses_nothing() {
    let mut s = proxied_stack(Collector::start());
    let token = s.keys.clinician("bob");
    let mut ledger = Ledger::default();
    for round in 0..3 {
        for _ in 0..5 {
            ledger.send(s.envoy.port, &token, &format!("kill{round}"));
        }
        // SIGKILL while batches are arriving: no final checkpoint, a transaction may be cut.
        s.collector.kill();
        for _ in 0..5 {
            let r = ledger.send(s.envoy.port, &token, &format!("down{round}"));
            assert!(matches!(r.status, 200 | 401), "{} {}", r.status, r.body);
        }
        let failed = s.proxy.counts().faulted;
        poll(
            "a delivery fails while the collector is dead",
            Duration::from_secs(15),
            || {
                s.proxy.counts().faulted > failed
                    || s.envoy.counter("wasmcustom.hipaa_audit.batches.retried") > 0
            },
        );
        s.collector.restart();
        assert_nothing_lost(&s.collector, &ledger, Duration::from_secs(30));
    }
    assert_eq!(ledger.sent.len(), 30);
    assert!(s.envoy.counter("wasmcustom.hipaa_audit.batches.retried") >= 1);
}

fn psql(sql: &str) -> String {
    let server = std::env::var("HIPAA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let out = std::process::Command::new("psql")
        .arg(server)
        .args(["-v", "ON_ERROR_STOP=1", "-qtA", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn postgresql_backends_terminated_mid_stream_lose_nothing() {
    let s = proxied_stack(Collector::start_postgres());
    let database = s.collector.db.rsplit('/').next().unwrap().to_string();
    assert!(database.starts_with("hipaa_e2e_"), "{database}");
    let token = s.keys.clinician("carol");
    let mut ledger = Ledger::default();
    let mut terminated = 0usize;
    for round in 0..4 {
        for _ in 0..6 {
            ledger.send(s.envoy.port, &token, &format!("pg{round}"));
        }
        // Only this test's own database: the shared server stays up.
        let killed = psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ));
        terminated += killed.parse::<usize>().unwrap();
    }
    assert!(terminated > 0, "no backend was terminated");
    assert_nothing_lost(&s.collector, &ledger, Duration::from_secs(40));
    assert_eq!(ledger.sent.len(), 24);
}

#[test]
fn an_envoy_killed_with_records_in_memory_loses_exactly_those_and_a_new_chain_starts() {
    envoy_stopped_with_records_in_memory(false);
}

/// SIGTERM: Envoy exits at once (no drain in this setup); records not acknowledged by then are
/// lost as with SIGKILL.
#[test]
fn an_envoy_terminated_with_records_in_memory_loses_only_the_unacknowledged_and_a_new_chain_starts()
{
    envoy_stopped_with_records_in_memory(true);
}

fn envoy_stopped_with_records_in_memory(graceful: bool) {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    let proxy = FaultyProxy::start(collector.port, Mode::Pass);
    let policy = spec(json!({"inline": keys.jwks()}), 20_000);
    let topo = topology(&policy, &collector, proxy.port, upstream.port);
    let token = keys.clinician("dave");
    let mut envoy = Envoy::start(&topo);
    let mut ledger = Ledger::default();
    for _ in 0..3 {
        ledger.send(envoy.port, &token, "before");
    }
    assert_nothing_lost(&collector, &ledger, Duration::from_secs(30));
    // Every chain-start of the first Envoy is in (one per VM that served or started).
    let first_chains = chain_ids(&collector);
    assert!(!first_chains.is_empty());

    // The collector answers 503: records pile up in Envoy's memory (the shared queue).
    proxy.set(Mode::Status(503));
    let mut in_memory = Ledger::default();
    for _ in 0..8 {
        let r = in_memory.send(envoy.port, &token, "inmem");
        assert!(matches!(r.status, 200 | 401), "{} {}", r.status, r.body);
    }
    let enqueued = envoy.counter("wasmcustom.hipaa_audit.records.enqueued");
    assert_eq!(enqueued, 11, "every request was enqueued");
    // Acknowledged access records (the counter also counts each chain-start).
    let acked = envoy
        .counter("wasmcustom.hipaa_audit.records.acked")
        .saturating_sub(first_chains.len() as u64);
    let mut reported_lost = None;
    if graceful {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(envoy.proc.child.id().to_string())
            .status();
        assert!(
            envoy.proc.wait_exit(Duration::from_secs(20)).is_some(),
            "Envoy did not exit on SIGTERM"
        );
        // Each worker VM's on_done says how many of its records die with it.
        reported_lost = Some(
            envoy
                .log()
                .lines()
                .filter_map(|l| l.split("VM stopping with ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
                .sum::<usize>(),
        );
    } else {
        // SIGKILL: no on_done, no flush. What was not acknowledged is gone with the process.
        envoy.proc.kill();
    }
    proxy.set(Mode::Pass);

    let envoy = Envoy::start(&topo);
    let mut after = Ledger::default();
    for _ in 0..3 {
        after.send(envoy.port, &token, "after");
    }
    assert_nothing_lost(&collector, &merge(&ledger, &after), Duration::from_secs(30));
    let stored_ids: BTreeSet<String> = stored(&collector)
        .iter()
        .filter_map(|r| r["requestId"].as_str().map(String::from))
        .collect();
    let lost: Vec<&String> = in_memory
        .sent
        .keys()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    // Bounded: at most what was enqueued and not acknowledged when the process died (here all
    // eight — the collector had refused every batch since the fault began).
    assert!(
        lost.len() as u64 <= enqueued - acked.min(enqueued),
        "lost {} > unacknowledged {}",
        lost.len(),
        enqueued - acked
    );
    assert_eq!(
        lost.len(),
        8,
        "the records refused by the collector died with Envoy"
    );
    if let Some(reported) = reported_lost {
        assert_eq!(
            reported,
            lost.len(),
            "the log's count of records lost at shutdown"
        );
    }
    // The gap shows: the old chains stop, new chains start (seq 0) after the restart.
    let chains_after = chain_ids(&collector);
    let new: Vec<_> = chains_after.difference(&first_chains).collect();
    assert!(!new.is_empty(), "no new chain-start after the restart");
    let starts = collector.records("kind=chain-start&limit=1000");
    for id in &new {
        let s = starts
            .iter()
            .find(|r| r["chain"]["id"] == id.as_str())
            .unwrap();
        assert_eq!(s["chain"]["seq"], 0, "{s:#}");
    }
}

fn merge(a: &Ledger, b: &Ledger) -> Ledger {
    let mut m = Ledger::default();
    m.sent.extend(a.sent.clone());
    m.sent.extend(b.sent.clone());
    m
}

fn chain_ids(c: &Collector) -> BTreeSet<String> {
    c.records("kind=chain-start&limit=1000")
        .iter()
        .filter_map(|r| r["chain"]["id"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_jwks_endpoint_that_hangs_up_stalls_or_speaks_garbage_refuses_until_it_answers() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    let jwks = static_server(keys.jwks());
    let proxy = FaultyProxy::start(jwks, Mode::Hangup);
    let policy = spec(
        json!({"cluster": "demo-idp", "path": "/jwks.json", "refreshSeconds": 10, "timeoutMs": 300}),
        20_000,
    );
    let mut topo = topology(&policy, &collector, collector.port, upstream.port);
    topo.clusters.push(("demo-idp".into(), proxy.port));
    let envoy = Envoy::start(&topo);
    let token = keys.clinician("erin");
    let mut ledger = Ledger::default();
    // (A 5xx answer and a garbage JSON body are in authn.rs's remote_jwks_* tests.) Each
    // failure doubles the fetch backoff (1, 2, 4 s ...), so three faults keep this short.
    for mode in [
        Mode::Hangup,
        Mode::Garbage,
        Mode::Slow(Duration::from_millis(1500)),
    ] {
        proxy.set(mode.clone());
        let before = proxy.counts().requests;
        poll(
            &format!("{mode:?}: a JWKS fetch meets the fault"),
            Duration::from_secs(20),
            || proxy.counts().requests > before,
        );
        let r = ledger.send(envoy.port, &token, "jwks");
        if r.status != 401 {
            // A token without the header counts as missing; with it, keys are not loaded.
            panic!("{mode:?}: {} {}", r.status, r.body);
        }
    }
    // The slow fetch fails when its timeout fires.
    poll("three failed fetches", Duration::from_secs(10), || {
        envoy.counter("wasmcustom.hipaa_authn.jwks.fetch_failed") >= 3
    });
    proxy.set(Mode::Pass);
    poll(
        "the keys arrive once the endpoint answers",
        Duration::from_secs(40),
        || ledger.send(envoy.port, &token, "jwks").status == 200,
    );
    assert_nothing_lost(&collector, &ledger, Duration::from_secs(30));
    let records = stored(&collector);
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"]["decision"] == "deny" && r["outcome"]["reason"] != "missing_token")
        .collect();
    assert!(!refused.is_empty());
    assert!(
        refused
            .iter()
            .all(|r| r["outcome"]["reason"] == "keys_not_loaded" && r["outcome"]["status"] == 401),
        "{refused:#?}"
    );
    assert!(records
        .iter()
        .all(|r| r["outcome"]["status"] != 500 && r["outcome"]["status"] != 503));
}

/// Adds the trap module after the first filter (audit stage by stage, the whole combined
/// filter otherwise) and sets `failure_policy` on every Wasm filter.
fn with_trap(config: &mut Value, trap: &std::path::Path, policy: &str) {
    let filters = config
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .unwrap()
        .as_array_mut()
        .unwrap();
    let trap_filter = json!({
        "name": "test-trap",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "test-trap", "root_id": "test-trap",
                "vm_config": {"vm_id": "test-trap", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": trap.display().to_string()}}}
            }
        }
    });
    filters.insert(1, trap_filter);
    for f in filters.iter_mut() {
        if let Some(cfg) = f
            .pointer_mut("/typed_config/config")
            .and_then(Value::as_object_mut)
        {
            cfg.remove("fail_open");
            cfg.insert("failure_policy".into(), json!(policy));
        }
    }
}

/// What Envoy logs when a filter VM traps.
const TRAP_LOG: &str =
    "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable";

fn trap_headers() -> Vec<(String, String)> {
    (0..40)
        .map(|i| (format!("x-filler-{i}"), "1".into()))
        .collect()
}

fn vm_failure_stack(policy: &str) -> (Keys, Collector, Upstream, EditedEnvoy, TempDir) {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    let dir = TempDir::new("trap");
    let trap = trap_module(dir.path());
    let p = spec(json!({"inline": keys.jwks()}), 20_000);
    let mut topo = topology(&p, &collector, collector.port, upstream.port);
    topo.concurrency = 1;
    let envoy = EditedEnvoy::start_edited(&topo, |c| with_trap(c, &trap, policy));
    (keys, collector, upstream, envoy, dir)
}

fn get_with(
    port: u16,
    path: &str,
    token: &str,
    extra: &[(String, String)],
) -> std::io::Result<Response> {
    let auth = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    try_request(port, "GET", path, &headers, b"")
}

#[test]
fn a_trapping_vm_fails_closed_with_503_and_is_recorded_never_passed() {
    let (keys, collector, _up, envoy, _dir) = vm_failure_stack("FAIL_CLOSED");
    let token = keys.clinician("frank");
    let r = get_with(envoy.port, "/fhir/Patient/vm-0", &token, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The trap: the request is not passed upstream.
    let r = get_with(envoy.port, "/fhir/Patient/vm-1", &token, &trap_headers());
    if let Ok(r) = &r {
        assert_eq!(
            r.status, 503,
            "a request whose filter VM trapped got {} {}",
            r.status, r.body
        );
    }
    poll("Envoy reports the trap", Duration::from_secs(10), || {
        envoy.log().contains(TRAP_LOG)
    });
    // Afterwards the failed VM stays failed: fail closed, every request refused with 503.
    for i in 2..5 {
        let r = get_with(envoy.port, &format!("/fhir/Patient/vm-{i}"), &token, &[]).unwrap();
        assert_eq!(
            r.status, 503,
            "after the VM failed: {} {}",
            r.status, r.body
        );
        assert!(
            !r.body.contains("\"headers\""),
            "the upstream answered: {}",
            r.body
        );
    }
    let records = collector.wait_for("", 4, Duration::from_secs(20));
    let by: BTreeMap<String, &Value> = records
        .iter()
        .filter_map(|r| {
            r["resource"]["patient"]
                .as_str()
                .map(|p| (p.to_string(), r))
        })
        .collect();
    assert_eq!(by["vm-0"]["outcome"]["status"], 200);
    // Recorded with the status Envoy sent, as a refusal: Envoy answered because a filter VM
    // failed (`response.code_details`), not the app. Stage by stage the trap sits between
    // audit and authn, so no identity was verified; the combined filter ran every stage
    // (authn verified frank) before the trap after it failed, and the record says so.
    let subject = if envoy.mesh {
        json!("frank")
    } else {
        Value::Null
    };
    for i in 2..5 {
        let r = by[&format!("vm-{i}")];
        assert_eq!(r["outcome"]["status"], 503, "{r:#}");
        assert_eq!(r["outcome"]["decision"], "deny", "{r:#}");
        assert_eq!(r["outcome"]["reason"], "filter_failed", "{r:#}");
        assert_eq!(r["actor"]["subject"], subject, "{r:#}");
    }
    let (code, text) = collector.verify();
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_trapping_vm_under_fail_reload_is_reloaded_and_serves_again() {
    let (keys, collector, _up, envoy, _dir) = vm_failure_stack("FAIL_RELOAD");
    let token = keys.clinician("grace");
    assert_eq!(
        get_with(envoy.port, "/fhir/Patient/rl-0", &token, &[])
            .unwrap()
            .status,
        200
    );
    let r = get_with(envoy.port, "/fhir/Patient/rl-1", &token, &trap_headers());
    if let Ok(r) = &r {
        assert!(
            r.status == 503,
            "a request whose filter VM trapped got {} {}",
            r.status,
            r.body
        );
    }
    let mut statuses = Vec::new();
    let mut n = 2;
    poll("the VM is reloaded", Duration::from_secs(20), || {
        let r = get_with(envoy.port, &format!("/fhir/Patient/rl-{n}"), &token, &[]).unwrap();
        n += 1;
        statuses.push(r.status);
        r.status == 200
    });
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}"
    );
    assert!(envoy.log().contains(TRAP_LOG));
    assert!(
        envoy.stat("wasm.test-trap.vm_reload_success") >= 1,
        "no VM reload counted"
    );
    // The chain's own VMs were never reloaded (their stats exist: the check is not vacuous).
    let failures = envoy.wasm_failures();
    let ours: Vec<&(String, u64)> = failures
        .iter()
        .filter(|(k, _)| k.starts_with("wasm.hipaa-") && k.ends_with(".vm_reload"))
        .collect();
    let expected = if envoy.mesh { 1 } else { 2 };
    assert_eq!(ours.len(), expected, "{failures:?}");
    assert!(ours.iter().all(|(_, v)| *v == 0), "{ours:?}");
    let _ = collector;
}
