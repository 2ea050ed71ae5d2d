//! The collector as its operators and its attackers meet it (issue #13 items 4 and 5): reads
//! only on the operators' port and only with an auditor's token, through the CLI, each read a
//! `trail-access` record; a full disk answered 503 with the store left intact; and, through
//! the real Envoy, a collector sidecar rendered by `policy render-collector` that takes
//! batches only from the audit filters' SPIFFE identities.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_core::audit::{AuditRecord, ChainWriter, MacKey, Resource};
use hipaa_e2e::collector::Collector;
use hipaa_e2e::{cli_bin, http, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A chain-start and `n` access records about `patient`, sealed with the collector's MAC key
/// (what an audit filter sends).
fn sealed(c: &Collector, chain: &str, n: usize, patient: &str, pad: usize) -> Vec<u8> {
    let now = now_ms();
    let (mut w, start) =
        ChainWriter::start(chain, MacKey::parse(&c.mac_key).unwrap(), now).unwrap();
    let mut batch = vec![serde_json::to_value(start).unwrap()];
    for i in 0..n {
        let mut record = AuditRecord::access(now, Some(format!("{chain}-{i}-{}", "r".repeat(pad))));
        record.resource = Some(Resource {
            patient: Some(patient.into()),
            resource_type: Some("Patient".into()),
        });
        batch.push(serde_json::to_value(w.seal(record).unwrap()).unwrap());
    }
    serde_json::to_vec(&batch).unwrap()
}

fn post(port: u16, body: &[u8]) -> http::Response {
    http::request(
        port,
        "POST",
        "/v1/records",
        &[("content-type", "application/json")],
        body,
    )
}

/// `hipaa-mesh ARGS` with the operator token in `token` (a file) or none at all.
fn cli(args: &[&str], token: Option<&Path>) -> Output {
    let mut cmd = Command::new(cli_bin());
    cmd.args(args).env_remove("HIPAA_AUDIT_TOKEN");
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Issue #13 item 5: `audit query --collector` and `audit verify --collector` read through the
/// operators' port only, need an auditor's token (none: a clear refusal before any request;
/// a token the collector's IdP did not sign: 401; another role: 403; each a non-zero exit),
/// and every answered read is a `trail-access` record naming the reader.
#[test]
fn operator_reads_need_an_auditor_token_and_are_recorded() {
    let c = Collector::start_with_read_port();
    let read_url = format!("http://127.0.0.1:{}", c.reads_port());
    let r = post(c.port, &sealed(&c, "chain-ops", 3, "123", 0));
    assert_eq!(r.status, 200, "{}", r.body);

    // The mesh-facing port has no reads, not even for an auditor.
    let auth = format!("Bearer {}", c.reader_token());
    for path in ["/v1/records?patient=123", "/v1/verify"] {
        let r = http::get(c.port, path, &[("authorization", auth.as_str())]);
        assert_eq!(r.status, 404, "{path} on the ingest port: {}", r.body);
    }

    let dir = TempDir::new("operator-tokens");
    let token_file = |name: &str, token: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, token).unwrap();
        path
    };
    let officer = token_file("officer", &c.token_for("officer-jane", "auditor"));
    let nurse = token_file("nurse", &c.token_for("nina", "nurse"));
    let stranger = token_file(
        "stranger",
        &hipaa_e2e::idp::Keys::generate().token(&[
            "--alg",
            "EdDSA",
            "--iss",
            hipaa_e2e::collector::READER_ISSUER,
            "--aud",
            hipaa_e2e::collector::READER_AUDIENCE,
            "--sub",
            "mallory",
            "--roles",
            "auditor",
        ]),
    );
    let query = [
        "audit",
        "query",
        "--collector",
        &read_url,
        "--patient",
        "123",
        "--format",
        "json",
    ];
    let verify = ["audit", "verify", "--collector", &read_url];
    for args in [&query[..], &verify[..]] {
        let none = cli(args, None);
        assert!(!none.status.success());
        assert!(
            text(&none).contains("needs an operator token"),
            "{}",
            text(&none)
        );
        let o = cli(args, Some(&stranger));
        assert!(!o.status.success());
        assert!(text(&o).contains("401"), "{}", text(&o));
        let o = cli(args, Some(&nurse));
        assert!(!o.status.success());
        assert!(text(&o).contains("403"), "{}", text(&o));
    }

    let o = cli(&query, Some(&officer));
    assert!(o.status.success(), "{}", text(&o));
    let records: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["resource"]["patient"] == "123"));
    let o = cli(&verify, Some(&officer));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("intact:"), "{out}");
    assert!(
        text(&o).contains("checkpoint public key sha256:")
            || text(&o).contains("checkpoint public key"),
        "{}",
        text(&o)
    );

    // Who read what: one trail-access record per answered read, naming officer-jane; the
    // refused reads left none.
    let reads = c.records("kind=trail-access&subject=officer-jane");
    let endpoints: Vec<&str> = reads
        .iter()
        .filter_map(|r| r["trailAccess"]["endpoint"].as_str())
        .collect();
    assert!(endpoints.contains(&"GET /v1/records"), "{reads:?}");
    assert!(endpoints.contains(&"GET /v1/verify"), "{reads:?}");
    assert!(reads.iter().any(|r| r["trailAccess"]["filter"]
        .as_str()
        .unwrap_or_default()
        .contains("patient=123")));
    assert!(c.records("kind=trail-access&subject=nina").is_empty());
    assert!(c.records("kind=trail-access&subject=mallory").is_empty());
}

/// Issue #13 item 4: a full disk (here the collector's file-size limit, `ulimit -f`) is a 503
/// for the batch that does not fit — the filters keep it and retry — never a half-written or
/// corrupt store: every batch acknowledged before is there, the refused one is stored once room
/// is back, and `audit verify` finds the trail intact.
#[test]
fn a_full_disk_is_a_503_and_the_store_stays_intact() {
    let mut c = Collector::start();
    let first = sealed(&c, "chain-disk-0", 20, "p-disk", 0);
    assert_eq!(post(c.port, &first).status, 200);
    c.stop();
    let used: u64 = std::fs::read_dir(c.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit.db"))
        .map(|e| e.metadata().unwrap().len())
        .max()
        .unwrap_or(0);
    c.file_limit_kib = Some(used / 1024 + 96);
    c.restart();
    let mut acked = 20;
    let mut refused = None;
    for i in 1..60 {
        let batch = sealed(&c, &format!("chain-disk-{i}"), 100, "p-disk", 200);
        let r = post(c.port, &batch);
        match r.status {
            200 => acked += 100,
            503 => {
                assert!(r.body.contains("store_unavailable"), "{}", r.body);
                refused = Some(batch);
                break;
            }
            other => panic!("batch {i}: {other} {}", r.body),
        }
    }
    let refused = refused.expect("the file-size limit was never reached");
    // Still serving (it answered, it did not die), and still refusing while the disk is full.
    // (A read is refused too while full: it cannot store its own trail-access record.)
    assert_eq!(post(c.port, &refused).status, 503);
    c.kill();
    c.file_limit_kib = None;
    c.restart();
    assert_eq!(
        c.records("patient=p-disk&limit=10000").len(),
        acked,
        "acknowledged batches are all there, the refused one is not"
    );
    let r = post(c.port, &refused);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.records("patient=p-disk&limit=10000").len(), acked + 100);
    c.stop();
    let (code, report) = c.verify();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("intact"), "{report}");
}

/// Issue #13 item 4, through the real Envoy: the collector sidecar that `policy
/// render-collector --target envoy` renders from ehr-api's and internal-api's policies takes a
/// batch over mTLS from ehr-api's SPIFFE id (stored), and refuses with 403 the same batch from
/// another mesh identity (a valid certificate of the same CA), a read from the allowed
/// identity, and a certificate of another CA in the handshake; nothing refused is stored.
#[test]
fn only_the_audit_filters_identities_may_post_through_the_collector_sidecar() {
    use hipaa_e2e::curl::curl;
    use hipaa_e2e::process::Proc;
    use hipaa_e2e::{envoy_bin, free_port, root};
    use std::time::{Duration, Instant};

    let dir = TempDir::new("collector-rbac");
    let certs = dir.path().join("certs");
    let out = Command::new(root().join("scripts/dev-certs.sh"))
        .arg(&certs)
        .arg("spiffe://cluster.local/ns/ehr/sa/ehr-api")
        .arg("web=spiffe://cluster.local/ns/ehr/sa/web")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = Collector::start();
    let (mtls, admin) = (free_port(), free_port());
    let rendered = dir.path().join("rendered");
    let o = Command::new(cli_bin())
        .args(["policy", "render-collector"])
        .arg(root().join("policies/ehr-api.yaml"))
        .arg(root().join("policies/internal-api.yaml"))
        .args(["--target", "envoy", "--out"])
        .arg(&rendered)
        .arg("--certs")
        .arg(&certs)
        .args(["--collector", &format!("127.0.0.1:{mtls}")])
        .args(["--collector-backend", &format!("127.0.0.1:{}", c.port)])
        .args(["--collector-admin", &format!("127.0.0.1:{admin}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mut cmd = Command::new(envoy_bin());
    cmd.arg("-c")
        .arg(rendered.join("collector-sidecar.yaml"))
        .args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ]);
    let mut sidecar = Proc::spawn("collector-sidecar", cmd, dir.path().join("sidecar.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http::try_request(admin, "GET", "/ready", &[], b"").is_ok_and(|r| r.status == 200) {
        assert!(sidecar.alive(), "{}", sidecar.log_text());
        assert!(
            Instant::now() < deadline,
            "sidecar not ready: {}",
            sidecar.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let batch_file = dir.path().join("batch.json");
    std::fs::write(&batch_file, sealed(&c, "chain-rbac", 2, "p-rbac", 0)).unwrap();
    let data = format!("@{}", batch_file.display());
    let url = format!("https://localhost:{mtls}/v1/records");
    let ca = certs.join("ca.pem").display().to_string();
    let as_cert = |name: &str, extra: &[&str]| {
        let cert = certs.join(format!("{name}.pem")).display().to_string();
        let key = certs.join(format!("{name}-key.pem")).display().to_string();
        // HTTP/1.1, as the workload sidecar's collector cluster speaks (no ALPN h2 upstream).
        let mut args = vec!["--http1.1", "--cacert", &ca, "--cert", &cert, "--key", &key];
        args.extend(extra);
        curl(&args)
    };
    let post_args = [
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &data,
        &url,
    ];

    // Another mesh identity (valid certificate, same CA): 403 from the sidecar, nothing stored.
    let web = as_cert("web", &post_args).unwrap();
    assert_eq!(web.status, 403, "{}", String::from_utf8_lossy(&web.body));
    assert!(c.records("patient=p-rbac").is_empty());
    // The audit filter's identity: stored.
    let ok = as_cert("workload", &post_args).unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["accepted"], 3);
    assert_eq!(c.records("patient=p-rbac").len(), 2);
    // Reads never pass the sidecar, not even for the allowed identity.
    let read_url = format!("https://localhost:{mtls}/v1/records?patient=p-rbac");
    let read = as_cert("workload", &[&read_url]).unwrap();
    assert_eq!(read.status, 403);
    // Health checks pass for any mesh identity.
    let health = as_cert("web", &[&format!("https://localhost:{mtls}/healthz")]).unwrap();
    assert_eq!(health.status, 200);
    // A certificate of another CA does not get through the handshake.
    assert!(as_cert("rogue", &post_args).is_err());
    assert!(sidecar.alive());
}
