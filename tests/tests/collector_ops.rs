//! The collector as its operators and its attackers meet it (issue #13 items 4 and 5): reads
//! only on the operators' port and only with an auditor's token, through the CLI, each read a
//! `trail-access` record; a full disk answered 503 with the store left intact; and, through
//! the real Envoy, a collector sidecar rendered by `policy render-collector` that takes
//! batches only from the audit filters' SPIFFE identities.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_core::audit::{AuditRecord, ChainWriter, MacKey, Resource};
use hipaa_e2e::collector::Collector;
use hipaa_e2e::{cli_bin, http, TempDir};
use serde_json::{json, Value};
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
    assert_eq!(post(c.port, &refused).status, 503);
    assert!(
        c.records("patient=p-disk").len() == acked,
        "acknowledged batches are all there"
    );
    c.kill();
    c.file_limit_kib = None;
    c.restart();
    let r = post(c.port, &refused);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.records("patient=p-disk&limit=10000").len(), acked + 100);
    c.stop();
    let (code, report) = c.verify();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("intact"), "{report}");
}
