//! The session authority (issue #16) on SQLite and PostgreSQL: activity learnt from ingest, the
//! replica scenarios, the check and revocation endpoints with their MACs, the conditional pull,
//! expiry, bounds, the revocation record under `audit verify`, and two collectors on one
//! PostgreSQL database agreeing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hipaa_core::audit::{ChainWriter, Decision, MacKey, MacKeyRing};
use hipaa_core::authn::authority::wire::{
    seal, CheckRequest, Purpose, RevocationList, MAC_HEADER, MAX_ANSWER_BYTES, MAX_REVOCATIONS,
    TIME_HEADER,
};
use hipaa_core::authn::authority::{AuthorityDecision, Reply, RevocationSet};
use serde_json::Value;

use super::http::{auditor_token, config_for, dechunk};
use super::{access, collector_at, mac_key, verify_db, Backend, TestDb, NOW};
use crate::ingest::ingest;
use crate::keys::CheckpointSigner;
use crate::server::start;
use crate::sessions::{self, session_key, SessionAuthority};
use crate::store::RevocationRow;
use crate::verify::Problem;

const MIN: i64 = 60_000;

both_backends!(
    activity_from_ingest_updates_the_authority,
    replica_scenarios,
    check_endpoint_is_authenticated_and_bounded,
    revoke_list_pull_expiry_and_verify,
    bounds_prune_and_revocation_cap,
);

fn authority_key() -> MacKeyRing {
    MacKeyRing::single(MacKey::from_bytes("sa1", &[42; 32]).unwrap())
}

fn authority() -> Arc<SessionAuthority> {
    Arc::new(SessionAuthority::new(authority_key()))
}

/// An allowed (or denied) access by `subject` in session `sid` at `NOW + at`.
fn activity(w: &mut ChainWriter, subject: &str, sid: &str, at: i64, allow: bool) -> Value {
    let mut r = access(at, subject, "p1", None, false);
    if let Some(a) = r.actor.as_mut() {
        a.session = Some(sid.into());
    }
    if let Some(o) = r.outcome.as_mut() {
        o.decision = if allow {
            Decision::Allow
        } else {
            Decision::Deny
        };
    }
    serde_json::to_value(w.seal(r).unwrap()).unwrap()
}

fn check_req(subject: &str, sid: &str, now: i64, local_last: Option<i64>) -> CheckRequest {
    CheckRequest {
        issuer: "https://idp".into(),
        session: sid.into(),
        subject: subject.into(),
        local_last_activity_ms: local_last,
        now_ms: now,
        idle_timeout_seconds: 900,
        absolute_timeout_seconds: 43_200,
        auth_time_ms: None,
    }
}

fn activity_from_ingest_updates_the_authority(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let c = collector_at(Arc::new(AtomicI64::new(NOW)));
    let (mut w, start) = ChainWriter::start("c-sess", mac_key(), NOW).unwrap();
    let batch = vec![
        serde_json::to_value(start).unwrap(),
        activity(&mut w, "alice", "s1", 10, true),
        activity(&mut w, "alice", "s1", 30, true),
        activity(&mut w, "alice", "s1", 20, true),
        // A refused request is not activity (a token refused as idle must not revive it).
        activity(&mut w, "mallory", "s9", 40, false),
    ];
    ingest(s.as_mut(), &c, &batch).unwrap();
    let key = session_key(&c.encryption, "alice", "s1");
    assert_eq!(s.session_activity(&key).unwrap(), Some(NOW + 30));
    assert_eq!(
        s.session_activity(&session_key(&c.encryption, "mallory", "s9"))
            .unwrap(),
        None
    );
    // A record whose MAC fails teaches nothing.
    let mut forged = activity(&mut w, "alice", "s1", 5 * MIN, true);
    forged["chain"]["mac"] = Value::String("00".repeat(32));
    ingest(s.as_mut(), &c, &[forged]).unwrap();
    assert_eq!(s.session_activity(&key).unwrap(), Some(NOW + 30));
    // Never moved back by an older record, and a far-future time is clamped to now + skew.
    let later = activity(&mut w, "alice", "s1", 1, true);
    ingest(s.as_mut(), &c, &[later]).unwrap();
    assert_eq!(s.session_activity(&key).unwrap(), Some(NOW + 30));
    let future = activity(&mut w, "alice", "s1", 100 * MIN, true);
    ingest(s.as_mut(), &c, &[future]).unwrap();
    assert_eq!(s.session_activity(&key).unwrap(), Some(NOW + MIN));
    // Nothing identifying is stored in clear.
    assert!(!key.contains("alice") && key.len() == 64);
}

/// Replica A and replica B of one workload share the authority.
fn replica_scenarios(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let clock = Arc::new(AtomicI64::new(NOW));
    let c = collector_at(clock.clone());
    let enc = &c.encryption;
    let t0 = NOW;
    // A sees the session first: asks, it is new, active; the sighting is recorded.
    let a = sessions::check(s.as_mut(), enc, &check_req("alice", "s1", t0, None), t0).unwrap();
    assert_eq!(a.decision, AuthorityDecision::Active);
    // The user then works only on B for 28 minutes (B's audit records reach the collector).
    let (mut w, start) = ChainWriter::start("c-b", mac_key(), t0).unwrap();
    let mut batch = vec![serde_json::to_value(start).unwrap()];
    for m in [5, 14, 28] {
        batch.push(activity(&mut w, "alice", "s1", m * MIN, true));
    }
    clock.store(t0 + 28 * MIN, Ordering::SeqCst);
    ingest(s.as_mut(), &c, &batch).unwrap();
    // At 30 minutes A finds it locally idle (last seen at t0) and asks: active elsewhere.
    let now = t0 + 30 * MIN;
    let a = sessions::check(
        s.as_mut(),
        enc,
        &check_req("alice", "s1", now, Some(t0)),
        now,
    )
    .unwrap();
    assert_eq!(
        a.decision,
        AuthorityDecision::Active,
        "B's activity counts on A"
    );
    assert_eq!(a.last_activity_ms, Some(now));
    // Idle on both for 16 minutes: idle, from either replica.
    let now = t0 + 46 * MIN + 1;
    for local in [Some(t0 + 30 * MIN), Some(t0 + 28 * MIN)] {
        let a =
            sessions::check(s.as_mut(), enc, &check_req("alice", "s1", now, local), now).unwrap();
        assert_eq!(a.decision, AuthorityDecision::Idle);
    }
    // Replica C never saw it: its first sight is idle too (not accepted as new).
    let a = sessions::check(s.as_mut(), enc, &check_req("alice", "s1", now, None), now).unwrap();
    assert_eq!(a.decision, AuthorityDecision::Idle);
    // An idle answer records nothing: still idle a moment later.
    let a = sessions::check(
        s.as_mut(),
        enc,
        &check_req("alice", "s1", now + 1, None),
        now + 1,
    )
    .unwrap();
    assert_eq!(a.decision, AuthorityDecision::Idle);
    // Another user's new session is untouched.
    let a = sessions::check(s.as_mut(), enc, &check_req("bob", "s2", now, None), now).unwrap();
    assert_eq!(a.decision, AuthorityDecision::Active);
}

// ------------------------------------------------------------------ over HTTP

/// One HTTP/1.1 request with these headers: (status, headers (lower-cased), body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: collector\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A signed check, as authn will send it; the answer as authn will read it.
fn http_check(addr: SocketAddr, req: &CheckRequest) -> Reply {
    let ring = authority_key();
    let body = req.encode();
    let (mac, tag) = seal(&ring, Purpose::CheckRequest, &[&body]);
    let (status, headers, answer) = call(
        addr,
        "POST",
        "/v1/sessions/check",
        &[(MAC_HEADER, &mac)],
        &body,
    );
    if status == 200 {
        assert!(answer.len() <= MAX_ANSWER_BYTES, "a fixed, small answer");
    }
    Reply::read(
        &ring,
        &tag,
        u32::from(status),
        header(&headers, MAC_HEADER).map(str::as_bytes),
        &answer,
    )
}

/// A signed conditional pull into `set`, as authn will do it.
fn http_pull(
    addr: SocketAddr,
    set: &mut RevocationSet,
    now: i64,
) -> hipaa_core::authn::authority::PullResult {
    let ring = authority_key();
    let time = now.to_string();
    let (mac, tag) = seal(&ring, Purpose::RevocationsRequest, &[time.as_bytes()]);
    let mut headers = vec![(TIME_HEADER, time.as_str()), (MAC_HEADER, mac.as_str())];
    let etag = set.etag().map(str::to_string);
    if let Some(e) = &etag {
        headers.push(("if-none-match", e));
    }
    let (status, h, body) = call(addr, "GET", "/v1/revocations", &headers, b"");
    let answer = hipaa_core::authn::authority::PullAnswer {
        status: u32::from(status),
        mac_header: header(&h, MAC_HEADER).map(str::as_bytes),
        etag: header(&h, "etag").map(str::as_bytes),
        body: &body,
    };
    set.apply_pull(&ring, &tag, answer, now)
}

fn revoke(addr: SocketAddr, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {}", auditor_token());
    let (status, _, body) = call(
        addr,
        "POST",
        "/v1/sessions/revoke",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn check_endpoint_is_authenticated_and_bounded(b: Backend) {
    let db = TestDb::new(b);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    config.sessions = Some(authority());
    let clock = Arc::new(AtomicI64::new(NOW));
    let server = start(
        config,
        collector_at(clock.clone()),
        CheckpointSigner::generate(),
        vec![],
    )
    .unwrap();
    let addr = server.addr();
    let req = check_req("alice", "s1", NOW, None);
    assert!(matches!(
        http_check(addr, &req),
        Reply::Answer(a) if a.decision == AuthorityDecision::Active
    ));
    let body = req.encode();
    // Unsigned, or signed with another key (the audit MAC key, say): 401, nothing recorded.
    let (status, _, _) = call(addr, "POST", "/v1/sessions/check", &[], &body);
    assert_eq!(status, 401);
    let audit_ring = MacKeyRing::single(mac_key());
    let (wrong, _) = seal(&audit_ring, Purpose::CheckRequest, &[&body]);
    let (status, _, _) = call(
        addr,
        "POST",
        "/v1/sessions/check",
        &[(MAC_HEADER, &wrong)],
        &body,
    );
    assert_eq!(status, 401);
    // Oversized: 413 before anything is parsed.
    let big = vec![b' '; 5000];
    let (status, _, _) = call(addr, "POST", "/v1/sessions/check", &[], &big);
    assert_eq!(status, 413);
    // A replayed call from long ago (signed, but stale): 400.
    let old = check_req("alice", "s1", NOW - 10 * MIN, None);
    let old_body = old.encode();
    let (mac, _) = seal(&authority_key(), Purpose::CheckRequest, &[&old_body]);
    let (status, _, _) = call(
        addr,
        "POST",
        "/v1/sessions/check",
        &[(MAC_HEADER, &mac)],
        &old_body,
    );
    assert_eq!(status, 400);
    // Signed garbage: 400, and no panic.
    let junk = b"{\"issuer\":1}";
    let (mac, _) = seal(&authority_key(), Purpose::CheckRequest, &[junk]);
    let (status, _, _) = call(
        addr,
        "POST",
        "/v1/sessions/check",
        &[(MAC_HEADER, &mac)],
        junk,
    );
    assert_eq!(status, 400);
    server.shutdown().unwrap();

    // A collector without the key is not an authority: 503, which authn treats as unavailable.
    let db2 = TestDb::new(b);
    let mut off = config_for(&db2.url);
    off.checkpoint_seconds = 0;
    let off = start(
        off,
        collector_at(clock),
        CheckpointSigner::generate(),
        vec![],
    )
    .unwrap();
    assert_eq!(http_check(off.addr(), &req), Reply::Unavailable);
    off.shutdown().unwrap();
}

fn revoke_list_pull_expiry_and_verify(b: Backend) {
    let db = TestDb::new(b);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    config.sessions = Some(authority());
    let clock = Arc::new(AtomicI64::new(NOW));
    let signer = CheckpointSigner::generate();
    let server = start(config, collector_at(clock.clone()), signer, vec![]).unwrap();
    let addr = server.addr();

    // Only an operator revokes.
    let (status, _, _) = call(
        addr,
        "POST",
        "/v1/sessions/revoke",
        &[],
        br#"{"subject":"alice"}"#,
    );
    assert_eq!(status, 401);
    let (status, _) = revoke(addr, r#"{"subject":"alice","session":"s1"}"#);
    assert_eq!(status, 400, "exactly one of subject and session");
    let (status, answer) = revoke(
        addr,
        r#"{"subject":"alice","reason":"laptop stolen","ttlSeconds":600}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["revoked"]["expiresAtMs"], NOW + 600_000);

    // The filters' pull: 200 with the list, then 304 while unchanged.
    let mut set = RevocationSet::new();
    assert_eq!(
        http_pull(addr, &mut set, NOW),
        hipaa_core::authn::authority::PullResult::Updated(1)
    );
    assert!(set.is_revoked("https://idp", Some("alice"), Some("any"), NOW));
    assert!(!set.is_revoked("https://idp", Some("bob"), Some("s2"), NOW));
    assert_eq!(
        http_pull(addr, &mut set, NOW),
        hipaa_core::authn::authority::PullResult::Unchanged
    );
    // An unsigned pull is refused.
    let (status, _, _) = call(addr, "GET", "/v1/revocations", &[(TIME_HEADER, "1")], b"");
    assert_eq!(status, 401);
    // The authority answers `revoked` for every session of alice, and bob is untouched.
    assert!(matches!(
        http_check(addr, &check_req("alice", "s7", NOW, None)),
        Reply::Answer(a) if a.decision == AuthorityDecision::Revoked
    ));
    assert!(matches!(
        http_check(addr, &check_req("bob", "s2", NOW, None)),
        Reply::Answer(a) if a.decision == AuthorityDecision::Active
    ));
    // A session revocation bound to an issuer.
    let (status, _) = revoke(addr, r#"{"session":"s2","issuer":"https://other"}"#);
    assert_eq!(status, 200);
    assert!(matches!(
        http_pull(addr, &mut set, NOW),
        hipaa_core::authn::authority::PullResult::Updated(2)
    ));
    assert!(!set.is_revoked("https://idp", Some("bob"), Some("s2"), NOW));
    assert!(set.is_revoked("https://other", Some("bob"), Some("s2"), NOW));
    // The operator's list (the read is recorded).
    let auth = format!("Bearer {}", auditor_token());
    let (status, _, body) = call(
        addr,
        "GET",
        "/v1/sessions/revoked",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed["revocations"].as_array().unwrap().len(), 2);

    // Past the alice revocation's lifetime: gone from the list, a new tag, alice active again.
    let later = NOW + 601_000;
    clock.store(later, Ordering::SeqCst);
    assert_eq!(
        http_pull(addr, &mut set, later),
        hipaa_core::authn::authority::PullResult::Updated(1)
    );
    assert!(!set.is_revoked("https://idp", Some("alice"), None, later));
    clock.store(NOW, Ordering::SeqCst);
    server.shutdown().unwrap();

    // Each revocation is a ledger record; audit verify covers it, and catches tampering.
    let mut s = db.open();
    let rows = s
        .rows(&crate::store::RowFilter {
            kind: Some(crate::revocation_record::KIND.into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 2);
    let report = verify_db(s.as_mut(), None);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.problem != Problem::Modified),
        "{:?}",
        report.findings
    );
    db.drop_triggers(s.as_mut());
    s.execute_sql("UPDATE audit_records SET bi_subject = NULL WHERE kind = 'session-revocation'")
        .unwrap();
    let report = verify_db(s.as_mut(), None);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem == Problem::Modified && f.detail.contains("blind index")),
        "{:?}",
        report.findings
    );
}

fn bounds_prune_and_revocation_cap(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let c = collector_at(Arc::new(AtomicI64::new(NOW)));
    let a = SessionAuthority::new(authority_key());
    let keep = i64::try_from(a.retention_seconds * 1000).unwrap();
    s.record_session_activity(&[("k-old".into(), NOW - keep - 1), ("k-new".into(), NOW)])
        .unwrap();
    s.insert_revocation(&RevocationRow {
        ledger_seq: 1,
        target: "subject".into(),
        value: "gone".into(),
        issuer: None,
        revoked_at_ms: NOW - 10,
        expires_at_ms: NOW,
    })
    .unwrap();
    assert_eq!(sessions::prune(s.as_mut(), &a, NOW).unwrap(), (1, 1));
    assert_eq!(s.session_activity("k-old").unwrap(), None);
    assert_eq!(s.session_activity("k-new").unwrap(), Some(NOW));
    // The list never exceeds what a filter holds: the next revocation is refused with 409.
    for i in 0..MAX_REVOCATIONS {
        s.insert_revocation(&RevocationRow {
            ledger_seq: 10 + i as i64,
            target: "session".into(),
            value: format!("s{i}"),
            issuer: None,
            revoked_at_ms: NOW,
            expires_at_ms: NOW + MIN,
        })
        .unwrap();
    }
    let (body, _) = sessions::revocation_list(s.as_mut(), NOW).unwrap();
    assert_eq!(
        RevocationList::parse(&body).unwrap().revocations.len(),
        MAX_REVOCATIONS
    );
    drop(s);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    config.sessions = Some(authority());
    let server = start(config, c, CheckpointSigner::generate(), vec![]).unwrap();
    let (status, answer) = revoke(server.addr(), r#"{"subject":"one-too-many"}"#);
    assert_eq!(status, 409, "{answer}");
    server.shutdown().unwrap();
}

/// Two collectors on one PostgreSQL database are one authority.
#[test]
fn two_collectors_on_one_postgres_agree() {
    let db = TestDb::new(Backend::Postgres);
    let clock = Arc::new(AtomicI64::new(NOW));
    let servers: Vec<_> = (0..2)
        .map(|_| {
            let mut config = config_for(&db.url);
            config.checkpoint_seconds = 0;
            config.sessions = Some(authority());
            start(
                config,
                collector_at(clock.clone()),
                CheckpointSigner::generate(),
                vec![],
            )
            .unwrap()
        })
        .collect();
    let (one, two) = (servers[0].addr(), servers[1].addr());
    // Seen through collector one; collector two knows it is active, then both agree on idle.
    assert!(matches!(
        http_check(one, &check_req("alice", "s1", NOW, None)),
        Reply::Answer(a) if a.decision == AuthorityDecision::Active
    ));
    let later = NOW + 16 * MIN;
    clock.store(later, Ordering::SeqCst);
    for addr in [one, two] {
        assert!(matches!(
            http_check(addr, &check_req("alice", "s1", later, Some(NOW))),
            Reply::Answer(a) if a.decision == AuthorityDecision::Idle
        ));
    }
    clock.store(NOW + 10 * MIN, Ordering::SeqCst);
    assert!(matches!(
        http_check(two, &check_req("alice", "s1", NOW + 10 * MIN, None)),
        Reply::Answer(a) if a.decision == AuthorityDecision::Active
            && a.last_activity_ms == Some(NOW + 10 * MIN)
    ));
    // A revocation made through one is pulled from two, with the same tag.
    let (status, _) = revoke(one, r#"{"subject":"alice"}"#);
    assert_eq!(status, 200);
    let (mut s1, mut s2) = (RevocationSet::new(), RevocationSet::new());
    let now = NOW + 10 * MIN;
    http_pull(one, &mut s1, now);
    http_pull(two, &mut s2, now);
    assert!(s2.is_revoked("i", Some("alice"), None, now));
    assert_eq!(s1.etag(), s2.etag());
    assert!(matches!(
        http_check(two, &check_req("alice", "s1", now, None)),
        Reply::Answer(a) if a.decision == AuthorityDecision::Revoked
    ));
    for s in servers {
        s.shutdown().unwrap();
    }
}
