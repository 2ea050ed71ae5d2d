//! Audit delivery under attack and across the filter's lifecycle, through the real Envoy 1.40
//! (V8), audit → authn, and the real collector (issue #12, items 3, 4 and 8):
//! * amplification: a flood of denials whose user agent JSON-escapes to ~100 KiB each must not
//!   jam delivery (no batch the collector refuses, later records keep flowing);
//! * trust direction: an upstream answering with the filter's own `x-hipaa-*` headers cannot
//!   make an allowed access look denied, and the client never sees those headers;
//! * lifecycle: a policy update (a new filter configuration over a file-based LDS) while
//!   records are in flight loses none of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::chain;
use hipaa_e2e::collector::Collector;
use hipaa_e2e::envoy::{Envoy, Topology};
use hipaa_e2e::faulty::{FaultyProxy, Mode};
use hipaa_e2e::http::{request, try_request, Response};
use hipaa_e2e::idp::{Keys, Upstream};
use hipaa_e2e::process::{wait_for_port, Proc};
use hipaa_e2e::{envoy_bin, TempDir};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn spec(keys: &Keys, max_batch: u32, flush_ms: u32, max_buffered: u32) -> Value {
    json!({
        "identity": {"providers": [chain::provider(&keys.jwks())]},
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "allowRoles": ["clinician"], "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": chain::audit(2000, flush_ms.into(), max_batch, max_buffered)
    })
}

fn topology(policy: &Value, collector: &Collector, collector_port: u16, upstream: u16) -> Topology {
    let mut t = chain::topology(
        &["audit", "authn"],
        policy,
        collector,
        collector_port,
        upstream,
    );
    // One worker: one chain, so the flood and the later reads share one delivery queue.
    t.concurrency = 1;
    t
}

fn request_id(r: &Response) -> String {
    let id = if r.status == 200 {
        r.echoed_header("x-request-id")
            .or_else(|| r.header("x-request-id").map(String::from))
    } else {
        r.json()["request_id"].as_str().map(String::from)
    };
    id.filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no request id in {} {}", r.status, r.body))
}

fn access_records(c: &Collector) -> Vec<Value> {
    c.records("kind=access&limit=10000")
}

fn wait_ids(c: &Collector, ids: &BTreeSet<String>, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = access_records(c);
        let stored: BTreeSet<String> = all
            .iter()
            .filter_map(|r| r["requestId"].as_str().map(String::from))
            .collect();
        let missing: Vec<&String> = ids.difference(&stored).collect();
        if missing.is_empty() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} record(s) never reached the collector",
            missing.len(),
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue #12 item 3: 250 unauthenticated requests whose user agent is 45,000 `"` (each JSON-
/// escapes to two bytes: ~90 KiB per denial record) fill one 200-record batch past the
/// collector's body limit. Before the fix the collector answered 413 and delivery resent that
/// batch forever: no later record reached the collector. Now every field a client controls is
/// capped (and the record says which were cut), a batch stays below the collector's limit, and
/// every record — the flood's and the 20 allowed reads after it — is stored.
#[test]
fn a_flood_of_records_swollen_by_json_escaping_cannot_jam_delivery() {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let collector = Collector::start();
    // A long flush interval, so the flood's records wait to be cut into full 200-record batches.
    let policy = spec(&keys, 200, 10_000, 20_000);
    let envoy = Envoy::start(&topology(
        &policy,
        &collector,
        collector.port,
        upstream.port,
    ));
    let ua = "\"".repeat(45_000);
    let mut denied = BTreeSet::new();
    let started = Instant::now();
    for i in 0..250 {
        let r = request(
            envoy.port,
            "GET",
            &format!("/fhir/Patient/flood-{i}"),
            &[("user-agent", ua.as_str())],
            b"",
        );
        assert_eq!(r.status, 401, "{}", r.body);
        denied.insert(request_id(&r));
    }
    eprintln!("flood sent in {:?}", started.elapsed());
    let token = keys.clinician("alice");
    let auth = format!("Bearer {token}");
    let mut allowed = BTreeSet::new();
    for i in 0..20 {
        let r = request(
            envoy.port,
            "GET",
            &format!("/fhir/Patient/after-{i}"),
            &[("authorization", auth.as_str())],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        allowed.insert(request_id(&r));
    }
    // The reads after the flood arrive...
    let all = wait_ids(&collector, &allowed, Duration::from_secs(40));
    // ... and so does every record of the flood, its user agent cut and flagged.
    let all = if denied.iter().all(|id| {
        all.iter()
            .any(|r| r["requestId"].as_str() == Some(id.as_str()))
    }) {
        all
    } else {
        wait_ids(&collector, &denied, Duration::from_secs(20))
    };
    let mut flood = 0;
    for r in &all {
        let id = r["requestId"].as_str().unwrap_or_default();
        if denied.contains(id) {
            flood += 1;
            let ua = r["source"]["userAgent"].as_str().unwrap();
            assert!(ua.len() <= 1024, "user agent kept at {} bytes", ua.len());
            assert!(ua.starts_with("\"\"\""), "{ua}");
            assert_eq!(r["truncated"], json!(["source.userAgent"]), "{r:#}");
            assert_eq!(r["outcome"]["decision"], "deny");
        } else if allowed.contains(id) {
            assert_eq!(r["outcome"]["decision"], "allow");
            assert!(r.get("truncated").is_none_or(Value::is_null), "{r:#}");
        }
    }
    assert_eq!(flood, 250);
    let integrity = collector.records("kind=integrity&limit=100");
    assert!(integrity.is_empty(), "{integrity:#?}");
    let (code, text) = collector.verify();
    assert_eq!(code, 0, "audit verify:\n{text}");
    assert_eq!(
        envoy.counter("wasmcustom.hipaa_audit.batches.retried"),
        0,
        "a batch was refused"
    );
    assert_eq!(envoy.counter("wasmcustom.hipaa_audit.records.dropped"), 0);
}

/// An upstream that answers every request with 200, a JSON body and the filters' own headers.
fn hostile_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let body = b"{\"ok\":true}";
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             x-hipaa-denial: bad_signature\r\nx-hipaa-subject: mallory\r\n\
                             X-Hipaa-Roles: admin\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all(head.as_bytes()).is_err()
                            || stream.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// Issue #12 item 4: the audit filter read `x-hipaa-denial` from any response, so an app (or a
/// vendor) could make an allowed access look denied in the trail, and its `x-hipaa-*` headers
/// reached the client. Only Envoy's own replies may carry them.
#[test]
fn an_upstream_cannot_forge_the_filters_response_headers() {
    let keys = Keys::generate();
    let upstream = hostile_upstream();
    let collector = Collector::start();
    let policy = spec(&keys, 10, 100, 20_000);
    let envoy = Envoy::start(&topology(&policy, &collector, collector.port, upstream));
    let auth = format!("Bearer {}", keys.clinician("alice"));
    let r = request(
        envoy.port,
        "GET",
        "/fhir/Patient/p-forged",
        &[
            ("authorization", auth.as_str()),
            ("x-request-id", "rid-forged"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for (name, _) in &r.headers {
        assert!(
            !name.to_ascii_lowercase().starts_with("x-hipaa-"),
            "the client saw the upstream's {name}"
        );
    }
    // A real denial still carries its reason (a local reply) and is recorded as one.
    let d = request(
        envoy.port,
        "GET",
        "/fhir/Patient/p-denied",
        &[("x-request-id", "rid-denied")],
        b"",
    );
    assert_eq!(d.status, 401);
    let ids: BTreeSet<String> = ["rid-forged", "rid-denied"].map(String::from).into();
    let all = wait_ids(&collector, &ids, Duration::from_secs(20));
    let forged = all.iter().find(|r| r["requestId"] == "rid-forged").unwrap();
    assert_eq!(forged["outcome"]["decision"], "allow", "{forged:#}");
    assert_eq!(forged["outcome"]["reason"], Value::Null, "{forged:#}");
    assert_eq!(forged["actor"]["subject"], "alice", "{forged:#}");
    let denied = all.iter().find(|r| r["requestId"] == "rid-denied").unwrap();
    assert_eq!(denied["outcome"]["decision"], "deny", "{denied:#}");
    assert_eq!(denied["outcome"]["reason"], "missing_token", "{denied:#}");
}

/// The topology's listener moved to a file-based LDS (`path_config_source` with a watched
/// directory), so the test can replace the filter configuration as a control plane would.
fn with_file_lds(config: &mut Value, dir: &std::path::Path) {
    let listeners = config["static_resources"]["listeners"].take();
    config["static_resources"]
        .as_object_mut()
        .unwrap()
        .remove("listeners");
    write_lds(dir, &listeners);
    config["node"] = json!({"id": "e2e", "cluster": "e2e"});
    config["dynamic_resources"] = json!({
        "lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": dir.join("lds.json").display().to_string(),
                "watched_directory": {"path": dir.display().to_string()}
            }
        }
    });
}

fn write_lds(dir: &std::path::Path, listeners: &Value) {
    let resources: Vec<Value> = listeners
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
            l
        })
        .collect();
    let tmp = dir.join("lds.json.tmp");
    std::fs::write(&tmp, json!({"resources": resources}).to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("lds.json")).unwrap();
}

/// An Envoy on a file-based LDS, with a one-second drain (a replaced listener's filter
/// configuration is released a second after the update).
struct LdsEnvoy {
    port: u16,
    admin_port: u16,
    proc: Proc,
    dir: TempDir,
}

impl LdsEnvoy {
    fn start(topo: &Topology) -> LdsEnvoy {
        let dir = TempDir::new("envoy-lds");
        let mut config = topo.config();
        with_file_lds(&mut config, dir.path());
        let path = dir.path().join("envoy.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--drain-time-s",
                "1",
            ])
            .args(["--log-level", "info", "--component-log-level", "wasm:debug"]);
        let mut proc = Proc::spawn("envoy", cmd, dir.path().join("envoy.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(proc.alive(), "Envoy exited:\n{}", proc.log_text());
            if wait_for_port(topo.listener_port, Duration::from_millis(100))
                && try_request(topo.admin_port, "GET", "/ready", &[], b"")
                    .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not ready:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(client) = topo.tls {
            hipaa_e2e::tls::register(topo.listener_port, client);
        }
        LdsEnvoy {
            port: topo.listener_port,
            admin_port: topo.admin_port,
            proc,
            dir,
        }
    }

    fn stat(&self, name: &str) -> u64 {
        hipaa_e2e::http::get(self.admin_port, "/stats", &[])
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for LdsEnvoy {
    fn drop(&mut self) {
        hipaa_e2e::tls::unregister(self.port);
    }
}

/// Issue #12 item 8: the audit root's `on_done` returned at once, dropping every record not yet
/// acknowledged when Envoy replaced the filter configuration (a policy update). Records are made
/// while the collector is stalled, the policy is updated (a new listener over LDS: same module,
/// new plugin configuration), the old configuration is released, the collector comes back:
/// every record is stored, and the replaced configuration's chain is complete.
#[test]
fn a_policy_update_with_records_in_flight_loses_none() {
    let keys = Keys::generate();
    let upstream = Upstream::start();
    let collector = Collector::start();
    let proxy = FaultyProxy::start(collector.port, Mode::Pass);
    let policy = spec(&keys, 10, 100, 20_000);
    let topo = topology(&policy, &collector, proxy.port, upstream.port);
    let mut envoy = LdsEnvoy::start(&topo);
    let auth = format!("Bearer {}", keys.clinician("alice"));
    let port = envoy.port;
    let send = |label: &str, n: usize, ids: &mut BTreeSet<String>| {
        for i in 0..n {
            let r = request(
                port,
                "GET",
                &format!("/fhir/Patient/{label}-{i}"),
                &[("authorization", auth.as_str())],
                b"",
            );
            assert_eq!(r.status, 200, "{}", r.body);
            ids.insert(request_id(&r));
        }
    };
    let mut ids = BTreeSet::new();
    send("before", 5, &mut ids);
    wait_ids(&collector, &ids, Duration::from_secs(20));
    // The collector stalls: what follows stays unacknowledged in the VM.
    proxy.set(Mode::Status(503));
    send("stalled", 30, &mut ids);
    // The policy update: same module, a new configuration (another flush interval).
    let mut new_policy = policy.clone();
    new_policy["audit"]["flushIntervalMs"] = json!(150);
    let mut updated = topology(&new_policy, &collector, proxy.port, upstream.port);
    updated.listener_port = topo.listener_port;
    updated.admin_port = topo.admin_port;
    write_lds(
        envoy.dir.path(),
        &updated.config()["static_resources"]["listeners"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while envoy.stat("listener_manager.listener_modified") < 1 {
        assert!(
            Instant::now() < deadline,
            "the LDS update was not taken:\n{}",
            envoy.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The replaced listener drains (1 s) and its filter configuration is released.
    let deadline = Instant::now() + Duration::from_secs(20);
    while envoy.stat("listener_manager.total_listeners_draining") > 0 {
        assert!(Instant::now() < deadline, "the old listener kept draining");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    send("after-update", 5, &mut ids);
    proxy.set(Mode::Pass);
    let all = wait_ids(&collector, &ids, Duration::from_secs(40));
    let stored = all
        .iter()
        .filter(|r| r["requestId"].as_str().is_some_and(|id| ids.contains(id)))
        .count();
    assert_eq!(stored, ids.len());
    let integrity = collector.records("kind=integrity&limit=100");
    assert!(integrity.is_empty(), "{integrity:#?}");
    let (code, text) = collector.verify();
    assert_eq!(code, 0, "audit verify:\n{text}");
    let log = envoy.proc.log_text();
    assert!(!log.contains("gave up"), "{log}");
    assert!(log.contains("configuration released"), "{log}");
    assert!(envoy.proc.alive());
}
