//! Detection: every detector with a scenario that fires and a near miss that does not, on
//! SQLite and PostgreSQL; restart, two collectors, status, verify, config, webhook.

use hipaa_core::audit::{AuditRecord, ChainWriter, Decision, Outcome};
use hipaa_core::calendar::rfc3339_millis;
use serde_json::Value;

use super::{access, collector, mac_key, Backend, TestDb, NOW};
use crate::alerts::config::Hours;
use crate::alerts::ledger::{self, AlertFilter};
use crate::alerts::runner::Runner;
use crate::alerts::{Alert, AlertKind, DetectConfig, Status};
use crate::ingest::ingest;
use crate::store::Store;

both_backends!(
    failed_auth_burst_by_source_fires_and_near_miss_does_not,
    failures_then_success_fires_and_near_miss_does_not,
    patient_volume_ceiling_fires_and_near_miss_does_not,
    patient_volume_baseline_fires_and_near_miss_does_not,
    break_glass_every_emergency_access_fires,
    sensitive_record_fires_once_per_hour_and_other_records_do_not,
    after_hours_fires_for_the_role_and_near_miss_does_not,
    exfiltration_bytes_and_refused_egress_fire_and_near_misses_do_not,
    integrity_finding_fires_and_clean_batch_does_not,
    restart_neither_reraises_nor_loses,
    two_detectors_on_one_database_store_each_alert_once,
    status_and_filters,
    verify_covers_alert_rows,
    webhook_retried_until_acknowledged_and_resumes_after_restart,
);

const DAY: i64 = 86_400_000;

/// Noon UTC of the tests' day: every window (5 min, 1 h, 1 day) starts at or before it.
fn t0() -> i64 {
    NOW.div_euclid(DAY) * DAY + 12 * 3_600_000
}

fn at(mut r: AuditRecord, time_ms: i64) -> AuditRecord {
    r.time = rfc3339_millis(time_ms);
    r
}

/// An authentication denial from `ip`, no verified subject.
fn auth_denial(n: i64, ip: &str, time_ms: i64) -> AuditRecord {
    let mut r = at(access(n, "x", "p0", None, false), time_ms);
    r.request_id = Some(format!("req-deny-{ip}-{n}"));
    r.actor = Some(Default::default());
    r.resource = Some(Default::default());
    if let Some(s) = r.source.as_mut() {
        s.ip = Some(ip.into());
    }
    r.outcome = Some(Outcome {
        decision: Decision::Deny,
        status: 401,
        reason: Some("bad_signature".into()),
        bytes: 0,
        duration_ms: 0,
    });
    r
}

fn from_ip(mut r: AuditRecord, ip: &str) -> AuditRecord {
    if let Some(s) = r.source.as_mut() {
        s.ip = Some(ip.into());
    }
    r
}

/// Seals `records` as one chain and ingests them.
fn store_records(s: &mut dyn Store, chain_id: &str, records: Vec<AuditRecord>) {
    let (mut w, start) = ChainWriter::start(chain_id, mac_key(), NOW).unwrap();
    let mut batch = vec![serde_json::to_value(start).unwrap()];
    for r in records {
        batch.push(serde_json::to_value(w.seal(r).unwrap()).unwrap());
    }
    let summary = ingest(s, &collector(), &batch).unwrap();
    assert_eq!(summary.flagged, 0, "{summary:?}");
}

/// Runs a fresh detector (as a starting collector would) until it has read everything.
fn detect(s: &mut dyn Store, cfg: &DetectConfig) -> Vec<Alert> {
    let enc = collector().encryption;
    let mut runner = Runner::start(s, &enc, cfg.clone(), NOW).unwrap();
    runner.run_until_idle(s, &enc, NOW).unwrap()
}

fn stored(s: &mut dyn Store) -> Vec<Alert> {
    ledger::list(s, &collector().encryption, &AlertFilter::default()).unwrap()
}

fn of_kind(alerts: &[Alert], kind: AlertKind) -> Vec<&Alert> {
    alerts.iter().filter(|a| a.kind == kind).collect()
}

fn failed_auth_burst_by_source_fires_and_near_miss_does_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut recs = Vec::new();
    for i in 0..10 {
        recs.push(auth_denial(i, "10.9.9.9", t0() + i * 1000));
    }
    // Near miss: 9 denials from another source in the same window.
    for i in 0..9 {
        recs.push(auth_denial(100 + i, "10.8.8.8", t0() + i * 1000));
    }
    store_records(s.as_mut(), "c1", recs);
    let raised = detect(s.as_mut(), &DetectConfig::default());
    let bursts = of_kind(&raised, AlertKind::FailedAuthBurst);
    assert_eq!(bursts.len(), 1, "{raised:#?}");
    let a = bursts[0];
    assert_eq!(a.source_ip.as_deref(), Some("10.9.9.9"));
    assert_eq!((a.count, a.threshold), (10, 10));
    assert_eq!(a.records.len(), 10);
    assert_eq!(a.window.from, rfc3339_millis(t0()));
    assert_eq!(a.window.to, rfc3339_millis(t0() + 300_000));
    assert_eq!(stored(s.as_mut()), raised);
}

fn failures_then_success_fires_and_near_miss_does_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut recs = Vec::new();
    for i in 0..5 {
        recs.push(auth_denial(i, "10.7.7.7", t0() + i * 1000));
    }
    recs.push(from_ip(
        at(access(10, "clerk-7", "p1", None, false), t0() + 10_000),
        "10.7.7.7",
    ));
    // Near miss: 4 failures, then a success.
    for i in 0..4 {
        recs.push(auth_denial(20 + i, "10.6.6.6", t0() + i * 1000));
    }
    recs.push(from_ip(
        at(access(30, "clerk-6", "p1", None, false), t0() + 20_000),
        "10.6.6.6",
    ));
    store_records(s.as_mut(), "c1", recs);
    let raised = detect(s.as_mut(), &DetectConfig::default());
    let bursts = of_kind(&raised, AlertKind::FailedAuthBurst);
    assert_eq!(bursts.len(), 1, "{raised:#?}");
    assert_eq!(bursts[0].subject.as_deref(), Some("clerk-7"));
    assert_eq!(bursts[0].count, 5);
    assert_eq!(bursts[0].records.len(), 6, "the failures and the success");
    assert_eq!(bursts[0].severity, crate::alerts::Severity::Critical);
}

fn small_volume() -> DetectConfig {
    let mut cfg = DetectConfig::default();
    cfg.patient_volume.ceiling = 5;
    cfg
}

fn patient_volume_ceiling_fires_and_near_miss_does_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut recs = Vec::new();
    for i in 0..6 {
        recs.push(at(
            access(i, "snoop", &format!("p{i}"), None, false),
            t0() + i * 1000,
        ));
    }
    // Near miss: 5 distinct patients, read twice each.
    for i in 0..10 {
        let p = format!("p{}", i % 5);
        recs.push(at(
            access(100 + i, "busy", &p, None, false),
            t0() + i * 1000,
        ));
    }
    store_records(s.as_mut(), "c1", recs);
    let raised = detect(s.as_mut(), &small_volume());
    let vol = of_kind(&raised, AlertKind::PatientVolume);
    assert_eq!(vol.len(), 1, "{raised:#?}");
    assert_eq!(vol[0].subject.as_deref(), Some("snoop"));
    assert_eq!((vol[0].count, vol[0].threshold), (6, 5));
    assert_eq!(vol[0].patient, None);
}

fn patient_volume_baseline_fires_and_near_miss_does_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut recs = Vec::new();
    let mut n = 0;
    let mut read = |recs: &mut Vec<AuditRecord>, who: &str, patient: String, t: i64| {
        n += 1;
        recs.push(at(access(n, who, &patient, None, false), t));
    };
    // 7 days of history: 2 patients at noon for "usual" and "steady", 3 days for "newcomer".
    for d in (1..=7).rev() {
        for p in 0..2 {
            read(&mut recs, "usual", format!("h{p}"), t0() - d * DAY + p);
            read(&mut recs, "steady", format!("h{p}"), t0() - d * DAY + p);
            if d <= 3 {
                read(&mut recs, "newcomer", format!("h{p}"), t0() - d * DAY + p);
            }
        }
    }
    // Today: 21 patients (above max(5 × 2, 20)) for "usual"; 20 for "steady" (not above);
    // 25 for "newcomer" (too little history for a baseline).
    for p in 0..25 {
        if p < 21 {
            read(&mut recs, "usual", format!("t{p}"), t0() + p);
        }
        if p < 20 {
            read(&mut recs, "steady", format!("t{p}"), t0() + p);
        }
        read(&mut recs, "newcomer", format!("t{p}"), t0() + p);
    }
    store_records(s.as_mut(), "c1", recs);
    // The fixed ceiling out of the way: only the baseline can fire.
    let mut cfg = DetectConfig::default();
    cfg.patient_volume.ceiling = 1000;
    let raised = detect(s.as_mut(), &cfg);
    let vol = of_kind(&raised, AlertKind::PatientVolume);
    assert_eq!(vol.len(), 1, "{raised:#?}");
    assert_eq!(vol[0].subject.as_deref(), Some("usual"));
    assert_eq!((vol[0].count, vol[0].threshold), (21, 20));
}

fn break_glass_every_emergency_access_fires(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    store_records(
        s.as_mut(),
        "c1",
        vec![
            at(access(1, "dr-er", "p9", None, true), t0()),
            at(access(2, "dr-er", "p9", None, true), t0() + 1000),
            at(access(3, "dr-er", "p9", None, false), t0() + 2000),
        ],
    );
    let raised = detect(s.as_mut(), &DetectConfig::default());
    let bg = of_kind(&raised, AlertKind::BreakGlass);
    assert_eq!(bg.len(), 2, "{raised:#?}");
    assert_eq!(bg[0].patient.as_deref(), Some("p9"));
    assert_eq!(bg[0].records, vec!["req-dr-er-1".to_string()]);
    assert_ne!(bg[0].id, bg[1].id);
    assert_eq!(raised.len(), 2);
}

fn sensitive_record_fires_once_per_hour_and_other_records_do_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut psych = at(access(3, "dr-a", "p3", None, false), t0() + 3000);
    if let Some(a) = psych.action.as_mut() {
        a.route = Some("psych-notes".into());
    }
    store_records(
        s.as_mut(),
        "c1",
        vec![
            at(access(1, "dr-a", "vip-1", None, false), t0()),
            at(access(2, "dr-a", "vip-1", None, false), t0() + 1000),
            psych,
            at(access(4, "dr-a", "p4", None, false), t0() + 4000),
        ],
    );
    let mut cfg = DetectConfig::default();
    cfg.sensitive_record.patients = vec!["vip-1".into()];
    cfg.sensitive_record.routes = vec!["psych-notes".into()];
    let raised = detect(s.as_mut(), &cfg);
    let sens = of_kind(&raised, AlertKind::SensitiveRecord);
    assert_eq!(sens.len(), 2, "{raised:#?}");
    assert_eq!(sens[0].patient.as_deref(), Some("vip-1"));
    assert_eq!(sens[1].records, vec!["req-dr-a-3".to_string()]);
    // Without the configuration nothing is sensitive.
    let db2 = TestDb::new(b);
    let mut s2 = db2.open();
    store_records(
        s2.as_mut(),
        "c1",
        vec![at(access(1, "dr-a", "vip-1", None, false), t0())],
    );
    assert!(detect(s2.as_mut(), &DetectConfig::default()).is_empty());
}

fn with_role(mut r: AuditRecord, role: &str) -> AuditRecord {
    if let Some(a) = r.actor.as_mut() {
        a.roles = Some(vec![role.into()]);
    }
    r
}

fn after_hours_fires_for_the_role_and_near_miss_does_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    // UTC-5: noon UTC is 07:00 local; 04:30 UTC the next day is 23:30 local.
    let late = t0() + 16 * 3_600_000 + 30 * 60_000;
    store_records(
        s.as_mut(),
        "c1",
        vec![
            with_role(at(access(1, "clerk-1", "p1", None, false), t0()), "clerk"),
            with_role(
                at(access(2, "clerk-2", "p1", None, false), t0() - 60_000),
                "clerk",
            ),
            with_role(at(access(3, "clerk-3", "p1", None, false), late), "clerk"),
            with_role(
                at(access(4, "clerk-3", "p2", None, false), late + 1000),
                "clerk",
            ),
            with_role(at(access(5, "dr-n", "p1", None, false), late), "clinician"),
        ],
    );
    let mut cfg = DetectConfig::default();
    cfg.after_hours.utc_offset_minutes = -300;
    cfg.after_hours.roles.insert(
        "clerk".into(),
        Hours {
            start: "07:00".into(),
            end: "19:00".into(),
            weekdays_only: false,
        },
    );
    let raised = detect(s.as_mut(), &cfg);
    let ah = of_kind(&raised, AlertKind::AfterHours);
    let mut who: Vec<_> = ah.iter().map(|a| a.subject.clone().unwrap()).collect();
    who.sort();
    // 06:59 local and 23:30 local; 07:00 local is inside; one alert per subject and day.
    assert_eq!(who, vec!["clerk-2", "clerk-3"], "{raised:#?}");
}

fn egress(mut r: AuditRecord, host: &str, decision: Decision, reason: Option<&str>) -> AuditRecord {
    // Built through its JSON form (the core crate does not re-export the type).
    r.egress = serde_json::from_value(serde_json::json!({"host": host, "baaId": null})).unwrap();
    if let Some(o) = r.outcome.as_mut() {
        o.decision = decision;
        o.reason = reason.map(str::to_string);
        if decision == Decision::Deny {
            o.status = 403;
            o.bytes = 0;
        }
    }
    r
}

fn with_bytes(mut r: AuditRecord, bytes: u64) -> AuditRecord {
    if let Some(o) = r.outcome.as_mut() {
        o.bytes = bytes;
    }
    r
}

fn exfiltration_bytes_and_refused_egress_fire_and_near_misses_do_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let t = t0();
    store_records(
        s.as_mut(),
        "c1",
        vec![
            with_bytes(at(access(1, "hoarder", "p1", None, false), t), 600),
            with_bytes(at(access(2, "hoarder", "p2", None, false), t + 1), 600),
            with_bytes(at(access(3, "modest", "p1", None, false), t + 2), 400),
            with_bytes(at(access(4, "modest", "p2", None, false), t + 3), 400),
            egress(
                at(access(5, "svc", "p1", None, false), t + 4),
                "nobaa.example",
                Decision::Deny,
                Some("egress_host_not_listed"),
            ),
            egress(
                at(access(6, "svc", "p1", None, false), t + 5),
                "ok.example",
                Decision::Deny,
                Some("role_not_allowed"),
            ),
            with_bytes(
                egress(
                    at(access(7, "svc2", "p1", None, false), t + 6),
                    "vendor.example",
                    Decision::Allow,
                    None,
                ),
                700,
            ),
        ],
    );
    let mut cfg = DetectConfig::default();
    cfg.exfiltration.subject_bytes = 1000;
    cfg.exfiltration.vendor_bytes = 500;
    let raised = detect(s.as_mut(), &cfg);
    let ex = of_kind(&raised, AlertKind::Exfiltration);
    let summaries: Vec<&str> = ex.iter().map(|a| a.summary.as_str()).collect();
    assert_eq!(ex.len(), 3, "{summaries:?}");
    assert_eq!(ex[0].subject.as_deref(), Some("hoarder"));
    assert_eq!((ex[0].count, ex[0].threshold), (1200, 1000));
    assert!(
        ex[1].summary.contains("egress_host_not_listed") && ex[1].summary.contains("nobaa.example"),
        "{summaries:?}"
    );
    assert!(ex[2].summary.contains("vendor.example"), "{summaries:?}");
}

fn integrity_finding_fires_and_clean_batch_does_not(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    store_records(
        s.as_mut(),
        "c1",
        vec![at(access(1, "dr-a", "p1", None, false), t0())],
    );
    assert!(detect(s.as_mut(), &DetectConfig::default()).is_empty());
    // A record whose MAC does not verify.
    let (mut w, _) = ChainWriter::start("c2", mac_key(), NOW).unwrap();
    let mut forged = serde_json::to_value(
        w.seal(at(access(2, "dr-a", "p1", None, false), t0()))
            .unwrap(),
    )
    .unwrap();
    forged["resource"]["patient"] = Value::from("p2");
    ingest(s.as_mut(), &collector(), &[forged]).unwrap();
    let raised = detect(s.as_mut(), &DetectConfig::default());
    let integ = of_kind(&raised, AlertKind::Integrity);
    assert_eq!(integ.len(), 1, "{raised:#?}");
    assert!(integ[0].summary.contains("bad-mac"), "{}", integ[0].summary);
    assert_eq!(integ[0].severity, crate::alerts::Severity::Critical);
}

fn restart_neither_reraises_nor_loses(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let enc = collector().encryption;
    let cfg = DetectConfig::default();
    // Six denials and a break-glass access, seen by the first run.
    let mut first: Vec<AuditRecord> = (0..6)
        .map(|i| auth_denial(i, "10.5.5.5", t0() + i * 1000))
        .collect();
    first.push(at(access(50, "dr-er", "p9", None, true), t0()));
    store_records(s.as_mut(), "c1", first);
    let mut runner = Runner::start(s.as_mut(), &enc, cfg.clone(), NOW).unwrap();
    let raised = runner.run_until_idle(s.as_mut(), &enc, NOW).unwrap();
    assert_eq!(raised.len(), 1, "the break-glass alert: {raised:#?}");
    drop(runner);
    // A restart: nothing raised again.
    let mut runner = Runner::start(s.as_mut(), &enc, cfg.clone(), NOW).unwrap();
    assert!(runner
        .run_until_idle(s.as_mut(), &enc, NOW)
        .unwrap()
        .is_empty());
    drop(runner);
    // Four more denials arrive while no detector runs; the restarted one counts all ten.
    let more: Vec<AuditRecord> = (6..10)
        .map(|i| auth_denial(i, "10.5.5.5", t0() + i * 1000))
        .collect();
    store_records(s.as_mut(), "c2", more);
    let mut runner = Runner::start(s.as_mut(), &enc, cfg, NOW).unwrap();
    let raised = runner.run_until_idle(s.as_mut(), &enc, NOW).unwrap();
    assert_eq!(raised.len(), 1, "{raised:#?}");
    assert_eq!(raised[0].kind, AlertKind::FailedAuthBurst);
    assert_eq!(raised[0].count, 10);
    assert_eq!(stored(s.as_mut()).len(), 2);
}

fn two_detectors_on_one_database_store_each_alert_once(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut recs: Vec<AuditRecord> = (0..12)
        .map(|i| auth_denial(i, "10.4.4.4", t0() + i * 1000))
        .collect();
    for i in 0..5 {
        recs.push(at(access(100 + i, "dr-er", "p9", None, true), t0() + i));
    }
    store_records(s.as_mut(), "c1", recs);
    let url = db.url.clone();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = crate::store::open_store(&url).unwrap();
                let enc = collector().encryption;
                let mut r = Runner::start(s.as_mut(), &enc, DetectConfig::default(), NOW).unwrap();
                r.run_until_idle(s.as_mut(), &enc, NOW).unwrap().len()
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 6, "each alert stored by exactly one of the two");
    let all = stored(s.as_mut());
    assert_eq!(all.len(), 6);
    let mut ids: Vec<_> = all.iter().map(|a| a.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 6);
}

fn reader() -> crate::read_auth::Reader {
    crate::read_auth::Reader {
        subject: "officer-jane".into(),
        issuer: "https://idp.hospital.test".into(),
    }
}

fn status_and_filters(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let enc = collector().encryption;
    store_records(
        s.as_mut(),
        "c1",
        vec![
            at(access(1, "dr-er", "p9", None, true), t0()),
            at(access(2, "dr-other", "p8", None, true), t0() + 1),
        ],
    );
    let raised = detect(s.as_mut(), &DetectConfig::default());
    assert_eq!(raised.len(), 2);
    let id = raised[0].id.clone();
    let rec = ledger::status_record(&id, Status::Acknowledged, &reader(), "looking", NOW);
    ledger::append_status(s.as_mut(), &enc, &rec, NOW).unwrap();
    let a = ledger::get(s.as_mut(), &enc, &id).unwrap().unwrap();
    assert_eq!(a.status, Status::Acknowledged);
    let rec = ledger::status_record(
        &id,
        Status::Closed,
        &reader(),
        "reviewed: real emergency",
        NOW + 1,
    );
    ledger::append_status(s.as_mut(), &enc, &rec, NOW + 1).unwrap();
    let mut f = |f: AlertFilter| ledger::list(s.as_mut(), &enc, &f).unwrap();
    let open = f(AlertFilter {
        status: Some(Status::Open),
        ..Default::default()
    });
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].subject.as_deref(), Some("dr-other"));
    let closed = f(AlertFilter {
        status: Some(Status::Closed),
        ..Default::default()
    });
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].id, id);
    assert_eq!(
        f(AlertFilter {
            subject: Some("dr-er".into()),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        f(AlertFilter {
            patient: Some("p8".into()),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        f(AlertFilter {
            kind: Some(AlertKind::Integrity),
            ..Default::default()
        })
        .len(),
        0
    );
    assert_eq!(
        f(AlertFilter {
            from_ms: Some(NOW + 1),
            ..Default::default()
        })
        .len(),
        0
    );
    assert!(
        ledger::get(s.as_mut(), &enc, "0123456789abcdef0123456789abcdef")
            .unwrap()
            .is_none()
    );
    assert!(ledger::get(s.as_mut(), &enc, "../x").unwrap().is_none());
}

fn verify_covers_alert_rows(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let enc = collector().encryption;
    store_records(
        s.as_mut(),
        "c1",
        vec![at(access(1, "dr-er", "p9", None, true), t0())],
    );
    let raised = detect(s.as_mut(), &DetectConfig::default());
    let rec = ledger::status_record(&raised[0].id, Status::Closed, &reader(), "ok", NOW);
    ledger::append_status(s.as_mut(), &enc, &rec, NOW).unwrap();
    let r = super::verify_db(s.as_mut(), None);
    assert!(
        r.findings
            .iter()
            .all(|f| f.problem != crate::verify::Problem::Modified),
        "{:?}",
        r.findings
    );
    // Unlinking an alert from its patient (the blind index column) is caught by its kind's check.
    db.drop_triggers(s.as_mut());
    s.execute_sql("UPDATE audit_records SET bi_patient = NULL WHERE kind = 'alert'")
        .unwrap();
    s.execute_sql("UPDATE audit_records SET source_hash = 'own:x' WHERE kind = 'alert-status'")
        .unwrap();
    let r = super::verify_db(s.as_mut(), None);
    let details: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.problem == crate::verify::Problem::Modified)
        .map(|f| f.detail.as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("blind index")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("dedupe key")),
        "{details:?}"
    );
}

/// What the receiver saw of one request: (status it answered, body, signature, alert id).
type Delivery = (u16, Vec<u8>, String, String);

/// A local receiver: answers 500 to the first `fail` requests, then 200; records each body and
/// signature.
fn receiver(
    fail: usize,
) -> (
    String,
    std::sync::mpsc::Receiver<Delivery>,
    std::thread::JoinHandle<()>,
) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", server.server_addr().to_ip().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(Some(mut req)) = server.recv_timeout(std::time::Duration::from_secs(20)) {
            let mut body = Vec::new();
            std::io::Read::read_to_end(req.as_reader(), &mut body).unwrap();
            let header = |name: &'static str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.equiv(name))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default()
            };
            let (sig, id) = (header("x-hipaa-signature"), header("x-hipaa-alert-id"));
            let status = if n < fail { 500 } else { 200 };
            n += 1;
            let _ = req.respond(tiny_http::Response::empty(status));
            if tx.send((status, body, sig, id)).is_err() {
                return;
            }
        }
    });
    (url, rx, h)
}

fn webhook_retried_until_acknowledged_and_resumes_after_restart(b: Backend) {
    use crate::alerts::webhook::{agent, deliver_pending, Webhook};
    let db = TestDb::new(b);
    let mut s = db.open();
    let enc = collector().encryption;
    store_records(
        s.as_mut(),
        "c1",
        vec![
            at(access(1, "dr-er", "p9", None, true), t0()),
            at(access(2, "dr-er", "p8", None, true), t0() + 1),
        ],
    );
    let raised = detect(s.as_mut(), &DetectConfig::default());
    assert_eq!(raised.len(), 2);
    let (url, rx, h) = receiver(2);
    let hook = Webhook::new(&url, b"0123456789abcdef-webhook-secret\n").unwrap();
    let agent = agent();
    // Two refusals: nothing acknowledged, the cursor stays.
    for _ in 0..2 {
        assert!(deliver_pending(s.as_mut(), &enc, &hook, &agent).is_err());
    }
    assert_eq!(s.state("webhook").unwrap(), None);
    // The first alert is acknowledged; then a "restart" (a new connection) sends only the second.
    let first_only = {
        let cursor_before = s.state("webhook").unwrap();
        assert!(cursor_before.is_none());
        deliver_pending(s.as_mut(), &enc, &hook, &agent).unwrap()
    };
    assert_eq!(first_only, 2);
    drop(s);
    let mut s = db.open();
    assert_eq!(
        deliver_pending(s.as_mut(), &enc, &hook, &agent).unwrap(),
        0,
        "nothing sent twice"
    );
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![500, 500, 200, 200]
    );
    for (_, body, sig, id) in &got {
        assert_eq!(*sig, hook.signature(body));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["id"].as_str(), Some(id.as_str()));
    }
    assert_eq!(got[0].3, raised[0].id);
    assert_eq!(got[2].3, raised[0].id, "retried until acknowledged");
    assert_eq!(got[3].3, raised[1].id);
    // A signature under another key does not match.
    let other = Webhook::new(&url, b"another-secret-of-16-bytes").unwrap();
    assert_ne!(other.signature(&got[2].1), got[2].2);
    drop(rx);
    drop(h);
    // A new alert after the "restart" is delivered from the persisted cursor.
    store_records(
        s.as_mut(),
        "c2",
        vec![at(access(9, "dr-er", "p7", None, true), t0() + 2)],
    );
    detect(s.as_mut(), &DetectConfig::default());
    let (url2, rx2, _h2) = receiver(0);
    let hook2 = Webhook::new(&url2, b"0123456789abcdef-webhook-secret").unwrap();
    assert_eq!(
        deliver_pending(s.as_mut(), &enc, &hook2, &agent).unwrap(),
        1
    );
    let got: Vec<_> = rx2
        .recv_timeout(std::time::Duration::from_secs(5))
        .into_iter()
        .collect();
    let v: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(v["patient"], "p7");
}

#[test]
fn config_defaults_unknown_keys_and_bad_values() {
    let d = DetectConfig::parse("").unwrap();
    assert_eq!(d, DetectConfig::default());
    assert!(d.enabled);
    let c = DetectConfig::parse(
        "failedAuth: {threshold: 3}\npatientVolume:\n  ceiling: 7\nafterHours:\n  utcOffsetMinutes: -300\n  roles:\n    clerk: {start: \"07:00\", end: \"19:00\"}\n",
    )
    .unwrap();
    assert_eq!(c.failed_auth.threshold, 3);
    assert_eq!(c.failed_auth.window_seconds, 300);
    assert_eq!(c.patient_volume.ceiling, 7);
    let json = DetectConfig::parse(r#"{"exfiltration": {"vendorBytes": 5}}"#).unwrap();
    assert_eq!(json.exfiltration.vendor_bytes, 5);
    let e = DetectConfig::parse("failedAuth: {treshold: 3}").unwrap_err();
    assert!(e.contains("failedAuth") && e.contains("treshold"), "{e}");
    let e = DetectConfig::parse("patientVolum: {}").unwrap_err();
    assert!(e.contains("patientVolum"), "{e}");
    let e = DetectConfig::parse("afterHours: {roles: {clerk: {start: \"7\", end: \"19:00\"}}}")
        .unwrap_err();
    assert!(e.contains("afterHours.roles.clerk.start"), "{e}");
    assert!(DetectConfig::parse("failedAuth: {windowSeconds: 0}").is_err());
}

#[test]
fn alert_id_is_deterministic_and_reveals_no_key() {
    let a = crate::alerts::model::alert_id(
        AlertKind::BreakGlass,
        "chain:c:1",
        "2026-11-23T12:00:00.000Z",
    );
    let b = crate::alerts::model::alert_id(
        AlertKind::BreakGlass,
        "chain:c:1",
        "2026-11-23T12:00:00.000Z",
    );
    let c = crate::alerts::model::alert_id(
        AlertKind::BreakGlass,
        "chain:c:2",
        "2026-11-23T12:00:00.000Z",
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(crate::alerts::model::is_alert_id(&a));
}
