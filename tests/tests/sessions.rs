//! Sessions across replicas and revocation (issue #16) in the real Envoy 1.40 with the real
//! `hipaa_mesh.wasm`: two Envoys with the same policy stand for two replicas of one workload,
//! the collector (one on SQLite, or two on one PostgreSQL) is the session authority. The idle
//! timeout is 2 s so the scenarios are quick; the local store counts whole seconds, so "idle"
//! below means a pause of 4 s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::chain;
use hipaa_e2e::cli_bin;
use hipaa_e2e::collector::Collector;
use hipaa_e2e::envoy::{Envoy, Filter, Topology};
use hipaa_e2e::http::{get, Response};
use hipaa_e2e::idp::{self, Keys, Upstream};
use serde_json::{json, Value};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

const CLUSTER: &str = "audit-collector";
const IDLE_SECONDS: u64 = 2;
/// Longer than the idle timeout at the local store's whole-second resolution.
const IDLE_PAUSE: Duration = Duration::from_secs(4);

fn spec(jwks: &str, on_unavailable: &str) -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": {"inline": jwks}, "algorithms": ["RS256", "ES256", "EdDSA"]
            }],
            "session": {
                "idleTimeoutSeconds": IDLE_SECONDS,
                "authority": {"cluster": CLUSTER, "timeoutMs": 500, "onUnavailable": on_unavailable,
                              "revocationsRefreshMs": 1000}
            }
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "allowRoles": ["clinician"], "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": {
            "collector": {"cluster": CLUSTER, "path": "/v1/records", "timeoutMs": 1000},
            "flushIntervalMs": 100, "maxBatch": 100, "maxBuffered": 1000
        }
    })
}

/// Two replicas of one workload: the same policy, each Envoy with its own collector address
/// (the same collector, or one of two sharing a database).
struct Replicas {
    keys: Keys,
    a: Envoy,
    b: Envoy,
    _upstream: Upstream,
}

fn replica(keys: &Keys, collector: &Collector, upstream: u16, on_unavailable: &str) -> Envoy {
    let policy = spec(&keys.jwks(), on_unavailable);
    // The chain as CI runs it: the combined `hipaa-mesh` over mTLS (the request paused and
    // resumed inside the one context), or audit + authn stage by stage.
    let mut t = chain::topology(
        &["audit", "authn"],
        &policy,
        collector,
        collector.port,
        upstream,
    );
    let missing: Vec<(String, String)> = collector
        .session_vm_env()
        .into_iter()
        .filter(|(name, _)| !t.vm_env.iter().any(|(n, _)| n == name))
        .collect();
    t.vm_env.extend(missing);
    Envoy::start(&t)
}

impl Replicas {
    fn start(ca: &Collector, cb: &Collector, on_unavailable: &str) -> Replicas {
        let keys = Keys::generate();
        let upstream = Upstream::start();
        let a = replica(&keys, ca, upstream.port, on_unavailable);
        let b = replica(&keys, cb, upstream.port, on_unavailable);
        Replicas {
            keys,
            a,
            b,
            _upstream: upstream,
        }
    }

    /// A clinician's token with MFA, signed in now, session `sid-<sub>`.
    fn token(&self, sub: &str) -> String {
        self.keys.clinician(sub)
    }
}

fn read(envoy: &Envoy, token: &str, patient: &str) -> Response {
    let auth = format!("Bearer {token}");
    get(
        envoy.port,
        &format!("/fhir/Patient/{patient}"),
        &[("authorization", auth.as_str())],
    )
}

/// The refusal's OAuth error and description (the reason itself is checked in the stored
/// audit record, where the collector is up).
fn error(r: &Response) -> (String, String) {
    let body = r.json();
    (
        body["error"].as_str().unwrap_or_default().to_string(),
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A 401 for a session that ended after inactivity (`session_idle`).
fn assert_idle(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.body);
    let (code, description) = error(r);
    assert_eq!(code, "invalid_token", "{}", r.body);
    assert!(description.contains("inactivity"), "{}", r.body);
}

fn authority_calls(envoy: &Envoy) -> u64 {
    ["active", "idle", "expired", "revoked", "unavailable"]
        .iter()
        .map(|c| envoy.counter(&format!("wasmcustom.hipaa_authn.session_authority.{c}")))
        .sum()
}

/// The denial records of `patient` once the collector has them.
fn denials(collector: &Collector, patient: &str, n: usize) -> Vec<Value> {
    collector
        .wait_for(&format!("patient={patient}"), n, Duration::from_secs(20))
        .into_iter()
        .filter(|r| r["outcome"]["decision"] == "deny")
        .collect()
}

/// (a) active only on replica B for longer than the idle timeout, then a request on A: 200.
fn active_elsewhere_is_active_here(r: &Replicas, ca: &Collector) {
    let t = r.token("amy");
    assert_eq!(read(&r.a, &t, "a-1").status, 200);
    let calls_a = authority_calls(&r.a);
    // A knows the session active now: repeated requests make no call (the common path).
    for _ in 0..3 {
        assert_eq!(read(&r.a, &t, "a-1").status, 200);
    }
    assert_eq!(
        authority_calls(&r.a),
        calls_a,
        "a locally active session costs no call"
    );
    let started = Instant::now();
    while started.elapsed() < IDLE_PAUSE {
        assert_eq!(read(&r.b, &t, "a-2").status, 200);
        sleep(Duration::from_millis(400));
    }
    let active =
        r.a.counter("wasmcustom.hipaa_authn.session_authority.active");
    let reply = read(&r.a, &t, "a-3");
    assert_eq!(
        reply.status, 200,
        "active on B, so active on A: {}",
        reply.body
    );
    assert_eq!(
        r.a.counter("wasmcustom.hipaa_authn.session_authority.active"),
        active + 1,
        "A asked the authority once"
    );
    // Revived: the next request passes locally.
    let calls = authority_calls(&r.a);
    assert_eq!(read(&r.a, &t, "a-3").status, 200);
    assert_eq!(authority_calls(&r.a), calls);
    assert!(ca.records("patient=a-2").len() >= 2);
}

/// (b) idle on both: refused on both with `session_idle`; (c) an idle session never seen by a
/// replica: refused there.
fn idle_everywhere_is_idle(r: &Replicas, collector: &Collector) {
    let t = r.token("ida");
    assert_eq!(read(&r.a, &t, "b-1").status, 200);
    assert_eq!(read(&r.b, &t, "b-1").status, 200);
    let only_a = r.token("otto");
    assert_eq!(read(&r.a, &only_a, "c-1").status, 200);
    sleep(IDLE_PAUSE);
    let idle_a = r.a.counter("wasmcustom.hipaa_authn.session_authority.idle");
    let idle_b = r.b.counter("wasmcustom.hipaa_authn.session_authority.idle");
    for envoy in [&r.a, &r.b] {
        assert_idle(&read(envoy, &t, "b-2"));
    }
    assert_eq!(
        r.a.counter("wasmcustom.hipaa_authn.session_authority.idle"),
        idle_a + 1
    );
    assert_eq!(
        r.b.counter("wasmcustom.hipaa_authn.session_authority.idle"),
        idle_b + 1
    );
    // Never seen by B, idle since A saw it: refused on B.
    assert_idle(&read(&r.b, &only_a, "c-2"));
    assert_eq!(
        r.b.counter("wasmcustom.hipaa_authn.session_authority.idle"),
        idle_b + 2
    );
    // The ended session is remembered per worker VM: replays cost at most one more call (the
    // other worker's first), however many come.
    let calls = authority_calls(&r.b);
    for _ in 0..6 {
        assert_eq!(read(&r.b, &t, "b-2").status, 401);
    }
    assert!(authority_calls(&r.b) <= calls + 1, "replays kept asking");
    let records = denials(collector, "b-2", 3);
    assert!(
        records
            .iter()
            .all(|rec| rec["outcome"]["reason"] == "session_idle"),
        "{records:?}"
    );
    assert_eq!(
        denials(collector, "c-2", 1)[0]["outcome"]["reason"],
        "session_idle"
    );
}

fn revoke(collector: &Collector, subject: &str) {
    let out = Command::new(cli_bin())
        .args([
            "session",
            "revoke",
            "--collector",
            &format!("http://127.0.0.1:{}", collector.port),
            "--subject",
            subject,
            "--reason",
            "workstation stolen",
        ])
        .env("HIPAA_AUDIT_TOKEN", collector.reader_token())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "session revoke: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (d) revoke a subject: both replicas refuse within 5 s; another user's session is untouched.
fn revocation_reaches_every_replica_within_5s(r: &Replicas, collector: &Collector) {
    let carol = r.token("carol");
    let dave = r.token("dave");
    for envoy in [&r.a, &r.b] {
        assert_eq!(read(envoy, &carol, "d-0").status, 200);
        assert_eq!(read(envoy, &dave, "d-0").status, 200);
    }
    revoke(collector, "carol");
    let revoked_at = Instant::now();
    let mut refused = [None, None];
    while refused.iter().any(Option::is_none) {
        for (i, envoy) in [&r.a, &r.b].into_iter().enumerate() {
            if refused[i].is_none() {
                let reply = read(envoy, &carol, "d-1");
                if reply.status != 200 {
                    assert_eq!(reply.status, 401, "{}", reply.body);
                    assert_eq!(error(&reply).0, "invalid_token", "{}", reply.body);
                    let challenge = reply.header("www-authenticate").unwrap_or_default();
                    assert!(challenge.contains("invalid_token"), "{challenge}");
                    refused[i] = Some(revoked_at.elapsed());
                }
            }
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "not refused on every replica within 5 s: {refused:?}"
        );
        sleep(Duration::from_millis(100));
    }
    eprintln!(
        "revocation in force on replica A after {:?}, B after {:?}",
        refused[0], refused[1]
    );
    // Every worker of each replica pulls on its own timer: 5 s after the revocation, every
    // request is refused, whichever worker takes it.
    // Meanwhile another user's session (kept active) is untouched.
    while revoked_at.elapsed() < Duration::from_secs(5) {
        for envoy in [&r.a, &r.b] {
            assert_eq!(
                read(envoy, &dave, "d-2").status,
                200,
                "another user is untouched"
            );
        }
        sleep(Duration::from_millis(300));
    }
    for envoy in [&r.a, &r.b] {
        for _ in 0..6 {
            assert_eq!(read(envoy, &carol, "d-1").status, 401);
        }
    }
    for envoy in [&r.a, &r.b] {
        assert!(envoy.counter("wasmcustom.hipaa_authn.deny.session_revoked") >= 1);
        assert_eq!(
            read(envoy, &dave, "d-2").status,
            200,
            "another user is untouched"
        );
        // A new token of the revoked user is refused too.
        let again = read(envoy, &r.token("carol"), "d-1");
        assert_eq!(
            again.status,
            401,
            "{} pulls ok {} failed {}",
            again.body,
            envoy.counter("wasmcustom.hipaa_authn.revocations.pull_ok"),
            envoy.counter("wasmcustom.hipaa_authn.revocations.pull_failed")
        );
    }
    let records = denials(collector, "d-1", 16);
    assert!(
        records
            .iter()
            .all(|rec| rec["outcome"]["reason"] == "session_revoked"
                && rec["outcome"]["status"] == 401),
        "{records:?}"
    );
}

#[test]
fn two_replicas_share_one_idle_clock_and_revocations_on_sqlite() {
    let collector = Collector::start();
    let r = Replicas::start(&collector, &collector, "local");
    active_elsewhere_is_active_here(&r, &collector);
    idle_everywhere_is_idle(&r, &collector);
    revocation_reaches_every_replica_within_5s(&r, &collector);
}

#[test]
fn two_replicas_two_collectors_one_postgresql() {
    let first = Collector::start_postgres();
    let second = first.start_peer();
    // Each replica talks to its own collector; they share the database.
    let r = Replicas::start(&first, &second, "local");
    active_elsewhere_is_active_here(&r, &first);
    idle_everywhere_is_idle(&r, &first);
    revocation_reaches_every_replica_within_5s(&r, &second);
}

/// (e) the authority down, `onUnavailable: local`: a first-seen session passes, a locally idle
/// one is refused with `session_idle`, and the `unavailable` counter says why.
#[test]
fn authority_down_with_local_decides_as_a_lone_envoy() {
    let mut collector = Collector::start();
    let r = Replicas::start(&collector, &collector, "local");
    let t = r.token("lou");
    assert_eq!(read(&r.a, &t, "e-1").status, 200);
    collector.kill();
    let unavailable =
        r.a.counter("wasmcustom.hipaa_authn.session_authority.unavailable");
    assert_eq!(
        read(&r.a, &r.token("nell"), "e-2").status,
        200,
        "first sight passes"
    );
    assert_eq!(
        r.a.counter("wasmcustom.hipaa_authn.session_authority.unavailable"),
        unavailable + 1
    );
    sleep(IDLE_PAUSE);
    assert_idle(&read(&r.a, &t, "e-3"));
    assert_eq!(
        r.a.counter("wasmcustom.hipaa_authn.session_authority.unavailable"),
        unavailable + 2
    );
}

/// (e) the authority down, `onUnavailable: deny`: 503 `session_authority_unavailable`.
#[test]
fn authority_down_with_deny_refuses_with_503() {
    let mut collector = Collector::start();
    let r = Replicas::start(&collector, &collector, "deny");
    let t = r.token("dora");
    assert_eq!(read(&r.a, &t, "f-1").status, 200);
    collector.kill();
    // Known active here: no call, still served.
    assert_eq!(read(&r.a, &t, "f-1").status, 200);
    let reply = read(&r.a, &r.token("fay"), "f-2");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(error(&reply).0, "temporarily_unavailable", "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(r.a.counter("wasmcustom.hipaa_authn.deny.session_authority_unavailable") >= 1);
}

/// A configured authority without its key variable: authn refuses to start, naming it.
#[test]
fn an_authority_without_its_key_stops_authn_at_start() {
    let collector = Collector::start();
    let keys = Keys::generate();
    let config = spec(&keys.jwks(), "local").to_string();
    let mut t = Topology::new(
        hipaa_e2e::free_port(),
        vec![Filter {
            name: "authn",
            config,
        }],
    );
    t.clusters.push((CLUSTER.to_string(), collector.port));
    t.vm_env = collector.vm_env();
    let (_, log) = Envoy::start_expecting_failure(&t);
    assert!(log.contains("HIPAA_SESSION_AUTHORITY_KEY"), "{log}");
}
