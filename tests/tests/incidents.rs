//! Issue #14 item 3 through the real binaries: a real collector stores a few MAC'd records, then
//! `hipaa-mesh incident open | note | assess | close | list | show | report` work an incident over
//! the operator API with the auditor's token, and the Markdown and HTML reports carry the HHS
//! breach-portal fields, the deadlines and nothing injected from an operator's text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_core::audit::{
    Action, Actor, AuditRecord, ChainWriter, Decision, MacKey, Operation, Outcome, Resource,
};
use hipaa_e2e::collector::Collector;
use hipaa_e2e::{cli_bin, http, TempDir};
use serde_json::json;
use std::process::Command;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Posts one chain of access records, sealed with the collector's MAC key as a filter would:
/// (request id, subject, patient, allowed).
fn store_records(c: &Collector, records: &[(&str, &str, &str, bool)]) {
    let now = now_ms();
    let (mut w, start) =
        ChainWriter::start("e2e-incidents", MacKey::parse(&c.mac_key).unwrap(), now).unwrap();
    let mut batch = vec![serde_json::to_value(start).unwrap()];
    for (i, (req, subject, patient, allowed)) in records.iter().enumerate() {
        let mut r = AuditRecord::access(now + i as i64, Some(req.to_string()));
        r.actor = Some(Actor {
            subject: Some(subject.to_string()),
            ..Actor::default()
        });
        r.action = Some(Action {
            method: "GET".into(),
            path: format!("/fhir/Patient/{patient}"),
            route: Some("patient-record".into()),
            operation: Operation::Read,
        });
        r.resource = Some(Resource {
            patient: Some(patient.to_string()),
            resource_type: Some("Patient".into()),
        });
        r.outcome = Some(Outcome {
            decision: if *allowed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            status: if *allowed { 200 } else { 403 },
            reason: None,
            bytes: 100,
            duration_ms: 1,
        });
        batch.push(serde_json::to_value(w.seal(r).unwrap()).unwrap());
    }
    let r = http::request(
        c.port,
        "POST",
        "/v1/records",
        &[("content-type", "application/json")],
        json!(batch).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], records.len() + 1, "{}", r.body);
}

struct Officer {
    url: String,
    token_file: std::path::PathBuf,
    _dir: TempDir,
}

impl Officer {
    fn new(c: &Collector) -> Officer {
        let dir = TempDir::new("incident-cli");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, c.reader_token()).unwrap();
        Officer {
            url: format!("http://127.0.0.1:{}", c.port),
            token_file,
            _dir: dir,
        }
    }

    /// `hipaa-mesh incident ARGS --collector URL --token-file F`: stdout, or panic with stderr.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(cli_bin())
            .arg("incident")
            .args(args)
            .arg("--collector")
            .arg(&self.url)
            .arg("--token-file")
            .arg(&self.token_file)
            .env_remove("HIPAA_AUDIT_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "incident {args:?} failed: {stderr}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

const HOSTILE: &str = "<script>alert('x')</script> | [click](javascript:alert(1))";

#[test]
fn an_officer_works_an_incident_from_request_ids_to_the_report() {
    let c = Collector::start();
    store_records(
        &c,
        &[
            ("req-1", "clerk-7", "pat-100", true),
            ("req-2", "clerk-7", "pat-101", true),
            ("req-3", "clerk-7", "pat-100", true),
            ("req-4", "clerk-7", "pat-102", false),
            ("req-5", "dr-ok", "pat-200", true),
        ],
    );
    let officer = Officer::new(&c);
    let today = hipaa_core::calendar::Date::from_unix(now_ms() / 1000);
    let opened = officer.run(&[
        "open",
        "--record",
        "req-1",
        "--record",
        "req-2",
        "--record",
        "req-3",
        "--record",
        "req-4",
        "--summary",
        &format!("clerk-7 opened charts without a treatment relationship {HOSTILE}"),
        "--discovered",
        &today.to_string(),
    ]);
    // pat-100 twice, pat-101; pat-102 was refused (nobody affected by it): 2 individuals.
    assert!(opened.contains("2 individual(s) affected"), "{opened}");
    let id = opened.split_whitespace().nth(1).unwrap().to_string();
    assert!(id.starts_with("INC-"), "{opened}");
    // 60 calendar days from today's discovery.
    assert!(opened.contains("(60 days left)"), "{opened}");

    officer.run(&["note", &id, &format!("interviewed the clerk {HOSTILE}")]);
    let assessed = officer.run(&[
        "assess",
        &id,
        "--nature",
        "names, MRNs and diagnoses",
        "--nature-rating",
        "high",
        "--person",
        "a workforce member",
        "--person-rating",
        "medium",
        "--acquired",
        &format!("charts were viewed {HOSTILE}"),
        "--acquired-rating",
        "high",
        "--mitigation",
        "access revoked",
        "--mitigation-rating",
        "low",
        "--type",
        "Unauthorized Access/Disclosure",
        "--location",
        "Electronic Medical Record",
        "--safeguards",
        "unique user IDs, audit controls, automatic logoff",
        "--actions",
        "sanction, retraining",
        "--state",
        "CA=2",
    ]);
    assert!(assessed.contains("(overall high)"), "{assessed}");
    let notified = format!("individuals={today}");
    officer.run(&[
        "close",
        &id,
        "--outcome",
        "breach",
        "--reason",
        "PHI was viewed by a person without a need to know",
        "--notified",
        &notified,
    ]);

    let list = officer.run(&["list"]);
    assert!(list.contains(&id) && list.contains("closed"), "{list}");
    let show = officer.run(&["show", &id]);
    assert!(show.contains("patients      pat-100, pat-101"), "{show}");
    let shown: serde_json::Value =
        serde_json::from_str(&officer.run(&["show", &id, "--format", "json"])).unwrap();
    assert_eq!(shown["affected"]["count"], 2);
    assert_eq!(shown["history"].as_array().unwrap().len(), 4);

    let md = officer.run(&["report", &id, "--format", "md"]);
    let due = hipaa_core::calendar::Date::from_unix(today.unix_start() + 60 * 86_400);
    for field in [
        format!("| Breach start date | {today} |"),
        format!("| Breach end date | {today} |"),
        format!("| Discovery date | {today} |"),
        "| Individuals affected | 2 (distinct patients in 4 linked access record(s)) |".into(),
        "| Type of breach | Unauthorized Access/Disclosure |".into(),
        "| Location of breached information | Electronic Medical Record |".into(),
        "| Safeguards in place prior to the breach | unique user IDs, audit controls, automatic logoff |".into(),
        format!("| Individual notice | sent {today} |"),
        "| Actions taken in response | sanction, retraining |".into(),
        "| Outcome | breach |".into(),
        format!("| Individuals | required | {due} | 60 | {today} |"),
        "| Affected residents by State | CA 2 |".into(),
        "| Whether the PHI was acquired or viewed | high |".into(),
    ] {
        assert!(md.contains(&field), "missing {field:?} in:\n{md}");
    }
    assert!(md.contains("## Timeline"), "{md}");
    assert!(
        md.contains("by e2e-auditor"),
        "the token's subject is the actor: {md}"
    );
    assert!(!md.contains("<script") && !md.contains("[click]("), "{md}");
    assert!(!md.contains("pat-100"), "no patient in the report: {md}");

    let dir = TempDir::new("incident-report");
    let out = dir.path().join("report.html");
    officer.run(&[
        "report",
        &id,
        "--format",
        "html",
        "--out",
        out.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&out).unwrap();
    for field in [
        format!("<tr><th>Discovery date</th><td>{today}</td></tr>"),
        "<tr><th>Individuals affected</th><td>2 (distinct patients in 4 linked access record(s))</td></tr>".into(),
        "<tr><th>Type of breach</th><td>Unauthorized Access/Disclosure</td></tr>".into(),
        format!("<tr><th>Individual notice</th><td>sent {today}</td></tr>"),
    ] {
        assert!(html.contains(&field), "missing {field:?} in:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("pat-100"), "{html}");

    // Every call was read with the credential and recorded; the trail still verifies.
    let trail = c.records("kind=trail-access");
    assert!(
        trail
            .iter()
            .filter(|r| r["trailAccess"]["endpoint"]
                .as_str()
                .unwrap()
                .contains("/v1/incidents"))
            .count()
            >= 9,
        "{trail:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, text) = c.verify();
    assert_eq!(code, 0, "{text}");
}

#[test]
fn incident_commands_need_the_credential() {
    let c = Collector::start();
    let dir = TempDir::new("incident-cli-bad");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "not-a-token").unwrap();
    let out = Command::new(cli_bin())
        .args(["incident", "list", "--collector"])
        .arg(format!("http://127.0.0.1:{}", c.port))
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    assert!(
        !err.contains("not-a-token"),
        "the token is never printed: {err}"
    );
}
