//! Incidents (issue #14 item 3) on SQLite and PostgreSQL: open (by request ids, by a subject's
//! time range, from an alert row), note, assess, close, the fold, the affected count, the
//! deadlines, `audit verify` over incident events, retention, and the HTTP wiring.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use hipaa_core::audit::{AuditRecord, ChainWriter, Decision};
use serde_json::{json, Value};

use super::http::{config_for, http, http_as, json as body_json};
use super::{access, collector, collector_at, mac_key, verify_db, Backend, TestDb, NOW, YEAR_MS};
use crate::checkpoint::sign_checkpoint;
use crate::incidents::api::{handle, Answer, Call};
use crate::incidents::ledger;
use crate::ingest::ingest;
use crate::keys::CheckpointSigner;
use crate::purge::{purge, six_years_before};
use crate::read_auth::Reader;
use crate::server::start;
use crate::store::{RowFilter, Store};
use crate::verify::Problem;

both_backends!(
    open_note_assess_close_and_fold,
    affected_individuals_from_records_and_scope,
    open_from_an_alert_row,
    verify_finds_an_altered_or_deleted_incident_event,
    purge_keeps_an_incident_whole_for_six_years_after_its_last_event,
    bad_input_is_refused_and_stores_nothing,
    http_calls_need_the_credential_and_are_recorded,
);

/// The collector's clock in these tests: 1 s after the records.
const AT: i64 = NOW + 1000;

fn reader() -> Reader {
    Reader {
        subject: "officer-jane".into(),
        issuer: "https://idp.hospital.test".into(),
    }
}

fn call(s: &mut dyn Store, method: &str, target: &str, body: Value) -> Answer {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    handle(
        s,
        &collector().encryption,
        &Call {
            method,
            path,
            query,
            body: &bytes,
            reader: &reader(),
            now_ms: AT,
        },
    )
}

/// One chain of records: dr-a reads p1, p2, p3 (allowed), is refused p9; dr-b reads p1.
fn records(s: &mut dyn Store) {
    let (mut w, start) = ChainWriter::start("c-inc", mac_key(), NOW).unwrap();
    let mut out = vec![serde_json::to_value(start).unwrap()];
    let mut rec = |n: i64, subject: &str, patient: &str, denied: bool| {
        let mut r: AuditRecord = access(n, subject, patient, None, false);
        if denied {
            let o = r.outcome.as_mut().unwrap();
            o.decision = Decision::Deny;
            o.status = 403;
        }
        out.push(serde_json::to_value(w.seal(r).unwrap()).unwrap());
    };
    rec(1, "dr-a", "p1", false);
    rec(2, "dr-a", "p2", false);
    rec(3, "dr-a", "p3", false);
    rec(4, "dr-a", "p9", true);
    rec(5, "dr-b", "p1", false);
    rec(6, "dr-a", "p1", false);
    let summary = ingest(s, &collector(), &out).unwrap();
    assert_eq!(summary.accepted, 7, "{summary:?}");
}

fn open(s: &mut dyn Store, body: Value) -> Value {
    let a = call(s, "POST", "/v1/incidents", body);
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

fn event(s: &mut dyn Store, id: &str, body: Value) -> Value {
    let a = call(s, "POST", &format!("/v1/incidents/{id}/events"), body);
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

fn assessment() -> Value {
    json!({"event": "assessment", "assessment": {
        "nature": {"text": "demographics and diagnoses", "rating": "high"},
        "person": {"text": "a workforce member without a treatment relationship", "rating": "medium"},
        "acquired": {"text": "charts were opened and viewed", "rating": "high"},
        "mitigation": {"text": "access revoked, attestation obtained", "rating": "medium"},
        "breachType": "Unauthorized Access/Disclosure",
        "location": "Electronic Medical Record",
        "safeguards": "Security Rule technical safeguards: unique IDs, audit controls",
        "actions": "sanctioned the workforce member, retrained staff",
        "states": {"CA": 3}
    }})
}

fn open_note_assess_close_and_fold(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    records(s.as_mut());
    let opened = open(
        s.as_mut(),
        json!({"summary": "dr-a opened charts without a treatment relationship",
               "records": ["req-dr-a-1", "req-dr-a-2", "req-dr-b-5", "req-unknown"],
               "discovered": "2026-11-20"}),
    );
    let id = opened["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("INC-20261123-"), "{id}");
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["openedBy"], "officer-jane");
    // p1 (twice), p2: two individuals from three records; one id not in the trail.
    assert_eq!(opened["affected"]["count"], 2);
    assert_eq!(opened["affected"]["patients"], json!(["p1", "p2"]));
    assert_eq!(opened["affected"]["records"], 3);
    assert_eq!(opened["affected"]["missingRecords"], json!(["req-unknown"]));
    // Discovered 2026-11-20: + 60 days = 10 (rest of November) + 31 + 19 = 2027-01-19; seen
    // on 2026-11-23: 57 days left. Two individuals: HHS's annual log, 2027-03-01.
    assert_eq!(opened["deadlines"]["individuals"]["due"], "2027-01-19");
    assert_eq!(opened["deadlines"]["individuals"]["daysLeft"], 57);
    assert_eq!(opened["deadlines"]["hhs"]["due"], "2027-03-01");
    assert_eq!(opened["deadlines"]["media"]["requirement"], "not-required");

    event(
        s.as_mut(),
        &id,
        json!({"event": "note", "text": "interviewed dr-a"}),
    );
    let assessed = event(s.as_mut(), &id, assessment());
    assert_eq!(assessed["status"], "assessed");
    assert_eq!(assessed["risk"], "high");
    let closed = event(
        s.as_mut(),
        &id,
        json!({"event": "closed", "outcome": "breach", "reason": "PHI was viewed",
               "notified": {"individuals": "2026-12-01", "hhs": null}}),
    );
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["outcome"]["outcome"], "breach");
    assert_eq!(closed["deadlinesApply"], "breach");
    assert_eq!(closed["deadlines"]["individuals"]["onTime"], true);
    let history: Vec<&str> = closed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["opened", "note", "assessment", "closed"]);

    // Read back from the ledger: the same incident.
    let shown = call(
        s.as_mut(),
        "GET",
        &format!("/v1/incidents/{id}"),
        Value::Null,
    );
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body, closed);
    assert_eq!(shown.endpoint, "GET /v1/incidents/{id}");
    assert_eq!(shown.filter, format!("id={id}"));
    // A second incident, listed with the first; the status filter.
    open(s.as_mut(), json!({"summary": "laptop lost"}));
    let list = call(s.as_mut(), "GET", "/v1/incidents", Value::Null);
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    let closed_only = call(
        s.as_mut(),
        "GET",
        "/v1/incidents?status=closed",
        Value::Null,
    );
    assert_eq!(closed_only.body.as_array().unwrap().len(), 1);
    assert_eq!(closed_only.body[0]["id"], id.as_str());
    assert_eq!(closed_only.body[0]["individualsAffected"], 2);

    // The report carries the portal fields and the count, never a patient.
    let md = call(
        s.as_mut(),
        "GET",
        &format!("/v1/incidents/{id}/report?format=md"),
        Value::Null,
    );
    assert_eq!(md.status, 200);
    let text = md.body["report"].as_str().unwrap();
    for field in [
        "| Breach start date | 2026-11-23 |",
        "| Discovery date | 2026-11-20 |",
        "| Individuals affected | 2 (distinct patients in 3 linked access record(s); 1 linked",
        "| Type of breach | Unauthorized Access/Disclosure |",
        "| Location of breached information | Electronic Medical Record |",
        "| Individual notice | sent 2026-12-01 |",
        "| HHS notice | not yet sent (due 2027-03-01) |",
        "| Affected residents by State | CA 3 |",
    ] {
        assert!(text.contains(field), "missing {field:?} in\n{text}");
    }
    assert!(!text.contains("p1") && !text.contains("p2"), "{text}");
    let html = call(
        s.as_mut(),
        "GET",
        &format!("/v1/incidents/{id}/report?format=html"),
        Value::Null,
    );
    assert_eq!(html.body["contentType"], "text/html; charset=utf-8");
    assert!(html.body["report"]
        .as_str()
        .unwrap()
        .contains("<tr><th>Discovery date</th><td>2026-11-20</td></tr>"));
}

fn affected_individuals_from_records_and_scope(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    records(s.as_mut());
    // Everything dr-a did: p1, p2, p3 read, p9 refused (not affected), p1 again.
    let all = open(
        s.as_mut(),
        json!({"summary": "s", "scope": {"subject": "dr-a",
            "from": "2026-11-23T00:00:00Z", "to": "2026-11-24T00:00:00Z"}}),
    );
    assert_eq!(all["affected"]["count"], 3);
    assert_eq!(all["affected"]["patients"], json!(["p1", "p2", "p3"]));
    assert_eq!(all["affected"]["records"], 5);
    // The range is [from, to): the records are at NOW+1..NOW+6 ms.
    let from = hipaa_core::calendar::rfc3339_millis(NOW + 1);
    let to = hipaa_core::calendar::rfc3339_millis(NOW + 3);
    let part = open(
        s.as_mut(),
        json!({"summary": "s", "scope": {"subject": "dr-a", "from": from, "to": to}}),
    );
    assert_eq!(part["affected"]["patients"], json!(["p1", "p2"]));
    assert_eq!(part["affected"]["firstAccess"], from.as_str());
    // Ids and scope together: a record reached both ways is counted once; dr-b's p1 too.
    let both = open(
        s.as_mut(),
        json!({"summary": "s", "records": ["req-dr-a-1", "req-dr-b-5"],
               "scope": {"subject": "dr-a", "from": from, "to": to}}),
    );
    assert_eq!(both["affected"]["count"], 2);
    assert_eq!(both["affected"]["records"], 3);
    // Another subject's name reaches nobody.
    let none = open(
        s.as_mut(),
        json!({"summary": "s", "scope": {"subject": "dr-z",
            "from": "2026-11-23", "to": "2026-11-24"}}),
    );
    assert_eq!(none["affected"]["count"], 0);
    assert_eq!(none["affected"]["firstAccess"], Value::Null);
}

/// An alert stored as the detectors store it (kind `alert`, dedupe `alert:<id>`).
fn insert_alert(s: &mut dyn Store, id: &str, records: &[&str], truncated: bool) {
    let alert = json!({
        "id": id, "kind": "patient_volume", "severity": "high", "subject": "dr-a",
        "patient": null, "sourceIp": null,
        "window": {"from": hipaa_core::calendar::rfc3339_millis(NOW),
                   "to": hipaa_core::calendar::rfc3339_millis(NOW + 60_000)},
        "count": records.len(), "threshold": 2, "records": records,
        "recordsTruncated": truncated, "summary": "patients above the ceiling",
        "status": "open", "createdAt": hipaa_core::calendar::rfc3339_millis(AT)
    });
    let alert: crate::alerts::Alert = serde_json::from_value(alert).unwrap();
    let enc = collector().encryption;
    assert!(crate::alerts::ledger::append_alert(s, &enc, &alert, AT).unwrap());
}

fn open_from_an_alert_row(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    records(s.as_mut());
    let id = "0123456789abcdef0123456789abcdef";
    insert_alert(s.as_mut(), id, &["req-dr-a-2", "req-dr-a-3"], false);
    let opened = open(
        s.as_mut(),
        json!({"alert": id, "summary": "volume alert on dr-a"}),
    );
    assert_eq!(opened["alert"], id);
    assert_eq!(
        opened["links"]["records"],
        json!(["req-dr-a-2", "req-dr-a-3"])
    );
    assert_eq!(opened["affected"]["patients"], json!(["p2", "p3"]));
    // A truncated alert also takes its subject's whole window: every dr-a record.
    let wide = "fedcba9876543210fedcba9876543210";
    insert_alert(s.as_mut(), wide, &["req-dr-a-1"], true);
    let opened = open(s.as_mut(), json!({"alert": wide, "summary": "s"}));
    assert_eq!(opened["links"]["scope"]["subject"], "dr-a");
    assert_eq!(opened["affected"]["count"], 3);
    // An unknown alert: 404, nothing stored.
    let a = call(
        s.as_mut(),
        "POST",
        "/v1/incidents",
        json!({"alert": "ffffffffffffffffffffffffffffffff", "summary": "s"}),
    );
    assert_eq!(a.status, 404, "{}", a.body);
    let list = call(s.as_mut(), "GET", "/v1/incidents", Value::Null);
    assert_eq!(list.body.as_array().unwrap().len(), 2);
}

/// Records (rows 1..=7), then an incident opened, noted, assessed, closed (rows 8..=11).
fn closed_incident(s: &mut dyn Store) -> (CheckpointSigner, String) {
    records(s);
    let id = open(s, json!({"summary": "s", "records": ["req-dr-a-1"]}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    event(s, &id, json!({"event": "note", "text": "n"}));
    event(s, &id, assessment());
    event(
        s,
        &id,
        json!({"event": "closed", "outcome": "not-breach", "reason": "low probability"}),
    );
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s, &signer, AT).unwrap();
    let r = verify_db(s, Some(&signer));
    assert!(r.intact, "{:?}", r.findings);
    assert_eq!(r.rows, 11);
    (signer, id)
}

fn row_findings(r: &crate::verify::VerifyReport) -> Vec<(Problem, Option<i64>)> {
    r.findings
        .iter()
        .filter(|f| f.problem != Problem::Schema)
        .map(|f| (f.problem, f.ledger_seq))
        .collect()
}

fn verify_finds_an_altered_or_deleted_incident_event(b: Backend) {
    // Altered: the assessment (row 10) rewritten.
    let db = TestDb::new(b);
    let mut s = db.open();
    let (signer, id) = closed_incident(s.as_mut());
    let row = s
        .rows(&RowFilter {
            after: 9,
            limit: 1,
            ..RowFilter::default()
        })
        .unwrap()
        .remove(0);
    assert_eq!(row.kind, "incident");
    let mut ct = row.ciphertext.clone();
    ct[3] ^= 0x40;
    db.drop_triggers(s.as_mut());
    s.execute_sql(&format!(
        "UPDATE audit_records SET ciphertext = {} WHERE ledger_seq = 10",
        db.bytes_literal(&ct)
    ))
    .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact);
    let rows = row_findings(&r);
    assert!(
        !rows.is_empty() && rows.iter().all(|f| *f == (Problem::Modified, Some(10))),
        "{rows:?}"
    );
    // The API refuses to fold a tampered history.
    let a = call(
        s.as_mut(),
        "GET",
        &format!("/v1/incidents/{id}"),
        Value::Null,
    );
    assert_eq!(a.status, 500, "{}", a.body);

    // Deleted: the note (row 9) removed.
    let db = TestDb::new(b);
    let mut s = db.open();
    let (signer, _) = closed_incident(s.as_mut());
    db.drop_triggers(s.as_mut());
    s.execute_sql("DELETE FROM audit_records WHERE ledger_seq = 9")
        .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact);
    assert!(
        r.findings
            .iter()
            .any(|f| f.problem == Problem::Deleted && f.ledger_seq == Some(9)),
        "{:?}",
        r.findings
    );

    // Rewritten columns: a dedupe key added to the close (row 11) is a finding too, even with
    // the ledger hash recomputed by someone without the checkpoint key... the hash breaks first.
    let db = TestDb::new(b);
    let mut s = db.open();
    let (signer, _) = closed_incident(s.as_mut());
    db.drop_triggers(s.as_mut());
    s.execute_sql("UPDATE audit_records SET source_hash = 'own:x' WHERE ledger_seq = 11")
        .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(
        r.findings
            .iter()
            .any(|f| f.ledger_seq == Some(11) && f.detail.contains("dedupe key")),
        "{:?}",
        r.findings
    );
}

fn purge_keeps_an_incident_whole_for_six_years_after_its_last_event(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let now = crate::ingest::system_clock()();
    let old = now - 7 * YEAR_MS;
    let enc = collector().encryption;
    ingest(
        s.as_mut(),
        &collector_at(Arc::new(AtomicI64::new(old))),
        &super::chain("old", 3),
    )
    .unwrap(); // rows 1..=4
    let ev = |id: &str, body: Value| -> crate::incidents::model::Event {
        let mut v = body;
        v["id"] = json!(id);
        v["by"] = json!("jane");
        v["issuer"] = json!("i");
        serde_json::from_value(v).unwrap()
    };
    let opened = |summary: &str| {
        json!({"event": "opened", "summary": summary, "discoveredAt": "2019-01-01T00:00:00.000Z",
               "alert": null, "links": {"records": [], "scope": null},
               "affected": {"count": 0, "patients": [], "records": 0,
                            "firstAccess": null, "lastAccess": null}})
    };
    let close = json!({"event": "closed", "outcome": "not-breach", "reason": "r"});
    let (a, bb) = ("INC-20191101-0000000a", "INC-20191101-0000000b");
    // A: opened and closed 7 years ago (rows 5, 6): may go.
    ledger::append(s.as_mut(), &enc, &ev(a, opened("a")), old + 1).unwrap();
    ledger::append(s.as_mut(), &enc, &ev(a, close.clone()), old + 2).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &signer, old + 1000).unwrap(); // count 6
                                                               // B: opened 7 years ago (row 7), still open.
    ledger::append(s.as_mut(), &enc, &ev(bb, opened("b")), old + 2000).unwrap();
    sign_checkpoint(s.as_mut(), &signer, old + 3000).unwrap(); // count 7
    let before = six_years_before(now) - 86_400_000;
    assert_eq!(
        ledger::retention_floor(s.as_mut(), &enc, before).unwrap(),
        Some(7),
        "an open incident is kept"
    );
    // B closed today: kept 6 more years, whole.
    ledger::append(s.as_mut(), &enc, &ev(bb, close), now).unwrap();
    sign_checkpoint(s.as_mut(), &signer, now).unwrap(); // count 8
    assert_eq!(
        ledger::retention_floor(s.as_mut(), &enc, before).unwrap(),
        Some(7)
    );
    // Without the floor the purge would take through #7 (checkpoint at old+3000).
    let out = purge(s.as_mut(), &signer, &enc, before, now).unwrap();
    assert_eq!(out.through_seq, 6, "{out:?}");
    assert_eq!(out.deleted, 6);
    let left = ledger::events(s.as_mut(), &enc, None).unwrap();
    assert!(!left.contains_key(a));
    assert_eq!(left[bb].len(), 2, "B is whole");
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(r.intact, "{:?}", r.findings);
}

fn bad_input_is_refused_and_stores_nothing(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    records(s.as_mut());
    let id = open(s.as_mut(), json!({"summary": "s"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rows_before = s
        .rows(&RowFilter {
            limit: 1000,
            ..RowFilter::default()
        })
        .unwrap()
        .len();
    let long = "x".repeat(crate::incidents::model::MAX_TEXT_BYTES + 1);
    let events = format!("/v1/incidents/{id}/events");
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        ("POST", "/v1/incidents".into(), b"not json".to_vec(), 400),
        ("POST", "/v1/incidents".into(), br#"{"summary":""}"#.to_vec(), 400),
        ("POST", "/v1/incidents".into(), br#"{"summary":"s","extra":1}"#.to_vec(), 400),
        ("POST", "/v1/incidents".into(), json!({"summary": long}).to_string().into_bytes(), 400),
        ("POST", "/v1/incidents".into(), br#"{"summary":"s","discovered":"2099-01-01"}"#.to_vec(), 400),
        ("POST", "/v1/incidents".into(), br#"{"summary":"s","records":["a\nb"]}"#.to_vec(), 400),
        ("POST", "/v1/incidents".into(),
         br#"{"summary":"s","scope":{"subject":"x","from":"2026-11-24","to":"2026-11-23"}}"#.to_vec(), 400),
        ("POST", events.clone(), br#"{"event":"opened","summary":"again"}"#.to_vec(), 400),
        ("POST", events.clone(), br#"{"event":"note"}"#.to_vec(), 400),
        ("POST", events.clone(), br#"{"event":"closed","outcome":"maybe","reason":"r"}"#.to_vec(), 400),
        ("POST", events.clone(),
         br#"{"event":"closed","outcome":"breach","reason":"r","notified":{"hhs":"2026-02-30"}}"#.to_vec(), 400),
        ("POST", events.clone(),
         br#"{"event":"closed","outcome":"breach","reason":"r","states":{"California":3}}"#.to_vec(), 400),
        ("POST", "/v1/incidents/INC-20261123-ffffffff/events".into(),
         br#"{"event":"note","text":"t"}"#.to_vec(), 404),
        ("GET", "/v1/incidents/../../v1/records".into(), vec![], 404),
        ("GET", "/v1/incidents/%00".into(), vec![], 404),
        ("DELETE", format!("/v1/incidents/{id}"), vec![], 405),
        ("GET", "/v1/incidents?status=all".into(), vec![], 400),
        ("GET", format!("/v1/incidents/{id}/report?format=pdf"), vec![], 400),
    ];
    for (method, target, body, status) in cases {
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let a = handle(
            s.as_mut(),
            &collector().encryption,
            &Call {
                method,
                path,
                query,
                body: &body,
                reader: &reader(),
                now_ms: AT,
            },
        );
        assert_eq!(
            a.status,
            status,
            "{method} {target} {}: {}",
            String::from_utf8_lossy(&body),
            a.body
        );
        assert!(a.body["error"].is_string());
    }
    let rows_after = s
        .rows(&RowFilter {
            limit: 1000,
            ..RowFilter::default()
        })
        .unwrap()
        .len();
    assert_eq!(rows_before, rows_after, "a refused call stores nothing");
}

fn http_calls_need_the_credential_and_are_recorded(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    records(s.as_mut());
    drop(s);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let addr = server.addr();
    let body = br#"{"summary":"by hand","records":["req-dr-a-1"]}"#;
    let (status, _, _) = http_as(addr, "POST", "/v1/incidents", body, None);
    assert_eq!(status, 401);
    let (status, _, _) = http_as(addr, "GET", "/v1/incidents", b"", Some("not-a-token"));
    assert_eq!(status, 401);
    let (status, _, resp) = http(addr, "POST", "/v1/incidents", body);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let id = body_json(&resp)["id"].as_str().unwrap().to_string();
    let (status, _, resp) = http(addr, "GET", &format!("/v1/incidents/{id}"), b"");
    assert_eq!(status, 200);
    assert_eq!(body_json(&resp)["affected"]["count"], 1);
    let big = vec![b' '; crate::incidents::api::MAX_BODY + 1];
    let (status, _, _) = http(addr, "POST", "/v1/incidents", &big);
    assert_eq!(status, 413);
    let (status, _, resp) = http(addr, "GET", "/v1/records?kind=trail-access", b"");
    assert_eq!(status, 200);
    let trail = body_json(&resp);
    let endpoints: Vec<(String, String)> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["trailAccess"]["endpoint"].as_str().unwrap().to_string(),
                r["trailAccess"]["filter"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("POST /v1/incidents".to_string(), format!("id={id}")),
            ("GET /v1/incidents/{id}".to_string(), format!("id={id}")),
        ],
        "the unauthenticated and oversized calls are not answered, the others are recorded"
    );
    server.shutdown().unwrap();
}
