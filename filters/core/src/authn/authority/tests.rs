use super::wire::*;
use super::*;
use crate::audit::MacKeyRing;
use crate::denial::Denial;
use crate::policy::schema::OnAuthorityUnavailable;
use crate::test_support::ring_of as ring;

const MIN: i64 = 60_000;

fn req(now_ms: i64) -> CheckRequest {
    CheckRequest {
        issuer: "https://idp".into(),
        session: "sid-1".into(),
        subject: "alice".into(),
        local_last_activity_ms: None,
        now_ms,
        idle_timeout_seconds: 900,
        absolute_timeout_seconds: 43_200,
        auth_time_ms: None,
    }
}

fn answer(decision: AuthorityDecision, last: Option<i64>) -> Reply {
    Reply::Answer(CheckAnswer {
        decision,
        last_activity_ms: last,
    })
}

// ------------------------------------------------------------------ when to ask

#[test]
fn only_first_sight_and_local_idle_ask_the_authority() {
    use crate::authn::session::SessionState;
    assert!(must_consult(SessionState::New.into()));
    assert!(must_consult(SessionState::Expired.into()));
    assert!(
        !must_consult(SessionState::Active.into()),
        "the common path makes no call"
    );
}

// ------------------------------------------------------------------ the filter's decision table

#[test]
fn decision_table_for_every_answer() {
    let local = OnAuthorityUnavailable::Local;
    for view in [LocalView::FirstSight, LocalView::LocallyIdle] {
        let c = combine(view, answer(AuthorityDecision::Active, Some(5)), local, 60);
        assert_eq!(
            c.outcome,
            Outcome::Allow {
                revive_to_ms: Some(5)
            },
            "{view:?}: active elsewhere in the mesh passes here and revives the local entry"
        );
        assert_eq!(c.counter, "active");
        let c = combine(view, answer(AuthorityDecision::Idle, Some(5)), local, 60);
        assert_eq!(
            c.outcome,
            Outcome::Deny {
                denial: Denial::SessionIdle,
                remember_ended: true
            }
        );
        let c = combine(view, answer(AuthorityDecision::Expired, None), local, 60);
        assert_eq!(
            c.outcome,
            Outcome::Deny {
                denial: Denial::AuthenticationTooOld { max_age: 60 },
                remember_ended: true
            }
        );
        let c = combine(view, answer(AuthorityDecision::Revoked, None), local, 60);
        assert_eq!(
            c.outcome,
            Outcome::Deny {
                denial: Denial::SessionRevoked,
                remember_ended: true
            }
        );
        assert_eq!(c.counter, "revoked");
    }
}

#[test]
fn unreachable_authority_with_local_decides_as_a_lone_envoy() {
    let local = OnAuthorityUnavailable::Local;
    let c = combine(LocalView::FirstSight, Reply::Unavailable, local, 60);
    assert_eq!(c.outcome, Outcome::Allow { revive_to_ms: None });
    assert_eq!(c.counter, "unavailable");
    let c = combine(LocalView::LocallyIdle, Reply::Unavailable, local, 60);
    assert_eq!(
        c.outcome,
        Outcome::Deny {
            denial: Denial::SessionIdle,
            remember_ended: false
        },
        "refused, but not remembered as ended: the authority may still know better"
    );
}

#[test]
fn unreachable_authority_with_deny_refuses_with_503() {
    for view in [LocalView::FirstSight, LocalView::LocallyIdle] {
        let c = combine(view, Reply::Unavailable, OnAuthorityUnavailable::Deny, 60);
        assert_eq!(
            c.outcome,
            Outcome::Deny {
                denial: Denial::SessionAuthorityUnavailable,
                remember_ended: false
            }
        );
        assert_eq!(c.counter, "unavailable");
    }
    let d = Denial::SessionAuthorityUnavailable;
    assert_eq!(d.status(), 503);
    assert_eq!(d.reason(), "session_authority_unavailable");
    assert_eq!(d.error(), "temporarily_unavailable");
    assert!(d
        .reply("r", &[])
        .headers
        .contains(&("retry-after".into(), "1".into())));
}

#[test]
fn revoked_is_a_401_invalid_token() {
    let d = Denial::SessionRevoked;
    assert_eq!(d.status(), 401);
    assert_eq!(d.error(), "invalid_token");
    assert_eq!(d.reason(), "session_revoked");
}

// ------------------------------------------------------------------ the authority's decision

#[test]
fn authority_active_elsewhere_then_checked_here_is_active() {
    let now = 100 * MIN;
    // Activity on replica B 1 minute ago reached the authority; A last saw it 20 minutes ago.
    let mut r = req(now);
    r.local_last_activity_ms = Some(now - 20 * MIN);
    let (a, record) = authority_decide(&r, Some(now - MIN), false, now);
    assert_eq!(a.decision, AuthorityDecision::Active);
    assert_eq!(record, Some(now), "the sighting is recorded as activity");
    assert_eq!(a.last_activity_ms, Some(now));
}

#[test]
fn authority_idle_everywhere_is_idle_and_records_nothing() {
    let now = 100 * MIN;
    let mut r = req(now);
    r.local_last_activity_ms = Some(now - 16 * MIN);
    let (a, record) = authority_decide(&r, Some(now - 16 * MIN), false, now);
    assert_eq!(a.decision, AuthorityDecision::Idle);
    assert_eq!(a.last_activity_ms, Some(now - 16 * MIN));
    assert_eq!(record, None);
}

#[test]
fn authority_never_seen_new_session_is_active_but_old_sign_in_without_activity_is_idle() {
    let now = 100 * MIN;
    let (a, record) = authority_decide(&req(now), None, false, now);
    assert_eq!(a.decision, AuthorityDecision::Active);
    assert_eq!(record, Some(now));
    let mut r = req(now);
    r.auth_time_ms = Some(now - 20 * MIN);
    assert_eq!(
        authority_decide(&r, None, false, now).0.decision,
        AuthorityDecision::Idle,
        "signed in 20 minutes ago, no activity anywhere since: idle"
    );
}

#[test]
fn authority_re_login_reusing_the_sid_is_activity() {
    let now = 100 * MIN;
    let mut r = req(now);
    r.auth_time_ms = Some(now - MIN);
    let (a, _) = authority_decide(&r, Some(now - 60 * MIN), false, now);
    assert_eq!(a.decision, AuthorityDecision::Active);
}

#[test]
fn authority_absolute_timeout_and_revocation_win() {
    let now = 1000 * MIN;
    let mut r = req(now);
    r.auth_time_ms = Some(now - 721 * MIN);
    assert_eq!(
        authority_decide(&r, Some(now), false, now).0.decision,
        AuthorityDecision::Expired
    );
    let (a, record) = authority_decide(&req(now), Some(now), true, now);
    assert_eq!(a.decision, AuthorityDecision::Revoked);
    assert_eq!(record, None, "a revoked session's check is not activity");
}

#[test]
fn authority_clamps_future_times_from_the_caller() {
    let now = 100 * MIN;
    let mut r = req(now);
    r.local_last_activity_ms = Some(i64::MAX);
    let (a, record) = authority_decide(&r, None, false, now);
    assert_eq!(a.decision, AuthorityDecision::Active);
    assert_eq!(record, Some(now + MAX_CLOCK_SKEW_MS));
}

#[test]
fn idle_timeout_zero_never_idles() {
    let now = 100 * MIN;
    let mut r = req(now);
    r.idle_timeout_seconds = 0;
    assert_eq!(
        authority_decide(&r, Some(1), false, now).0.decision,
        AuthorityDecision::Active
    );
}

// ------------------------------------------------------------------ wire

#[test]
fn check_request_round_trips_and_is_bounded() {
    let r = req(5);
    assert_eq!(CheckRequest::parse(&r.encode()).unwrap(), r);
    let mut long = req(5);
    long.subject = "a".repeat(MAX_FIELD_BYTES + 1);
    assert_eq!(
        CheckRequest::parse(&long.encode()),
        Err(WireError::BadField)
    );
    let mut empty = req(5);
    empty.session = String::new();
    assert_eq!(
        CheckRequest::parse(&empty.encode()),
        Err(WireError::BadField)
    );
    assert_eq!(
        CheckRequest::parse(&vec![b' '; MAX_CHECK_BODY + 1]),
        Err(WireError::TooLarge)
    );
    let extra = br#"{"issuer":"i","session":"s","subject":"u","localLastActivityMs":null,"nowMs":1,"idleTimeoutSeconds":1,"absoluteTimeoutSeconds":1,"authTimeMs":null,"x":1}"#;
    assert_eq!(CheckRequest::parse(extra), Err(WireError::Malformed));
}

#[test]
fn hostile_bytes_never_panic() {
    let samples: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"decision\":\"active\",\"lastActivityMs\":1e400}".to_vec(),
        b"{\"revocations\":[{\"target\":\"subject\"}]}".to_vec(),
        "{\"decision\":\"\u{e9}\"}".as_bytes().to_vec(),
        vec![b'['; 10_000],
    ];
    let r = ring("k1", 1);
    for s in &samples {
        let _ = CheckRequest::parse(s);
        let _ = CheckAnswer::parse(s);
        let _ = RevocationList::parse(s);
        let _ = open(&r, Purpose::CheckRequest, Some(s), &[s]);
        let _ = Reply::read(&r, &[0; 32], 200, Some(s), s);
        let mut set = RevocationSet::new();
        let answer = PullAnswer {
            status: 200,
            mac_header: Some(s),
            etag: Some(s),
            body: s,
        };
        let _ = set.apply_pull(&r, &[0; 32], answer, 1);
    }
}

#[test]
fn answer_size_is_fixed_and_small() {
    let worst = CheckAnswer {
        decision: AuthorityDecision::Expired,
        last_activity_ms: Some(i64::MIN),
    };
    assert!(worst.encode().len() <= MAX_ANSWER_BYTES);
    assert_eq!(CheckAnswer::parse(&worst.encode()).unwrap(), worst);
}

#[test]
fn macs_bind_purpose_key_and_request() {
    let k = ring("k1", 1);
    let body = req(5).encode();
    let (header, tag) = seal(&k, Purpose::CheckRequest, &[&body]);
    assert_eq!(
        open(&k, Purpose::CheckRequest, Some(header.as_bytes()), &[&body]),
        Ok(tag)
    );
    // Another purpose, another key, another body, no header: refused.
    assert_eq!(
        open(&k, Purpose::CheckAnswer, Some(header.as_bytes()), &[&body]),
        Err(WireError::BadMac)
    );
    let other = ring("k1", 2);
    assert_eq!(
        open(
            &other,
            Purpose::CheckRequest,
            Some(header.as_bytes()),
            &[&body]
        ),
        Err(WireError::BadMac)
    );
    assert_eq!(
        open(
            &ring("k2", 1),
            Purpose::CheckRequest,
            Some(header.as_bytes()),
            &[&body]
        ),
        Err(WireError::UnknownKey)
    );
    assert_eq!(
        open(&k, Purpose::CheckRequest, Some(header.as_bytes()), &[b"{}"]),
        Err(WireError::BadMac)
    );
    assert_eq!(
        open(&k, Purpose::CheckRequest, None, &[&body]),
        Err(WireError::NoMac)
    );
    // Length-prefixed parts: moving bytes between parts changes the tag.
    let (h1, _) = seal(&k, Purpose::RevocationsAnswer, &[b"ab", b"c"]);
    assert!(open(
        &k,
        Purpose::RevocationsAnswer,
        Some(h1.as_bytes()),
        &[b"a", b"bc"]
    )
    .is_err());
}

#[test]
fn an_answer_is_believed_only_for_its_own_request() {
    let k = ring("k1", 1);
    let (_, tag1) = seal(&k, Purpose::CheckRequest, &[b"one"]);
    let (_, tag2) = seal(&k, Purpose::CheckRequest, &[b"two"]);
    let body = CheckAnswer {
        decision: AuthorityDecision::Active,
        last_activity_ms: Some(1),
    }
    .encode();
    let (mac, _) = seal(&k, Purpose::CheckAnswer, &[&tag1, &body]);
    assert!(matches!(
        Reply::read(&k, &tag1, 200, Some(mac.as_bytes()), &body),
        Reply::Answer(_)
    ));
    assert_eq!(
        Reply::read(&k, &tag2, 200, Some(mac.as_bytes()), &body),
        Reply::Unavailable,
        "a replayed answer to another request"
    );
    assert_eq!(
        Reply::read(&k, &tag1, 200, None, &body),
        Reply::Unavailable,
        "an unsigned answer (spoofed collector)"
    );
    assert_eq!(
        Reply::read(&k, &tag1, 503, Some(mac.as_bytes()), &body),
        Reply::Unavailable
    );
}

// ------------------------------------------------------------------ revocations

fn revocation(target: RevocationTarget, value: &str, issuer: Option<&str>, exp: i64) -> Revocation {
    Revocation {
        target,
        value: value.into(),
        issuer: issuer.map(str::to_string),
        revoked_at_ms: 1,
        expires_at_ms: exp,
    }
}

fn pull(
    set: &mut RevocationSet,
    k: &MacKeyRing,
    status: u32,
    list: &RevocationList,
    now: i64,
) -> PullResult {
    let (_, tag) = seal(k, Purpose::RevocationsRequest, &[b"123"]);
    let body = if status == 200 { list.encode() } else { vec![] };
    let etag = RevocationList::etag(&list.encode());
    let status_text = status.to_string();
    let (mac, _) = seal(
        k,
        Purpose::RevocationsAnswer,
        &[&tag, status_text.as_bytes(), etag.as_bytes(), &body],
    );
    let answer = PullAnswer {
        status,
        mac_header: Some(mac.as_bytes()),
        etag: Some(etag.as_bytes()),
        body: &body,
    };
    set.apply_pull(k, &tag, answer, now)
}

#[test]
fn revocation_set_matches_subject_session_and_issuer() {
    let k = ring("k1", 1);
    let list = RevocationList {
        revocations: vec![
            revocation(RevocationTarget::Subject, "alice", None, 1000),
            revocation(
                RevocationTarget::Session,
                "sid-9",
                Some("https://idp"),
                1000,
            ),
        ],
    };
    let mut set = RevocationSet::new();
    assert_eq!(pull(&mut set, &k, 200, &list, 10), PullResult::Updated(2));
    assert!(set.is_revoked("any", Some("alice"), None, 10));
    assert!(set.is_revoked("https://idp", Some("bob"), Some("sid-9"), 10));
    assert!(
        !set.is_revoked("https://other", Some("bob"), Some("sid-9"), 10),
        "a session revocation with an issuer binds to that issuer"
    );
    assert!(
        !set.is_revoked("https://idp", Some("bob"), Some("sid-1"), 10),
        "another user's fresh session is untouched"
    );
    assert_eq!(
        set.etag(),
        Some(RevocationList::etag(&list.encode()).as_str())
    );
    // 304 keeps the set; expiry still applies.
    assert_eq!(pull(&mut set, &k, 304, &list, 20), PullResult::Unchanged);
    assert!(set.is_revoked("any", Some("alice"), None, 20));
    assert!(!set.is_revoked("any", Some("alice"), None, 1000), "expired");
    set.expire(1000);
    assert!(set.is_empty());
}

fn unsigned(status: u32, body: &[u8]) -> PullAnswer<'_> {
    PullAnswer {
        status,
        mac_header: None,
        etag: None,
        body,
    }
}

#[test]
fn a_bad_pull_keeps_the_set() {
    let k = ring("k1", 1);
    let list = RevocationList {
        revocations: vec![revocation(RevocationTarget::Subject, "alice", None, 1000)],
    };
    let mut set = RevocationSet::new();
    pull(&mut set, &k, 200, &list, 10);
    // Unsigned (a spoofed collector emptying the list) and wrong statuses change nothing.
    let empty = RevocationList::default().encode();
    let (_, tag) = seal(&k, Purpose::RevocationsRequest, &[b"1"]);
    assert!(matches!(
        set.apply_pull(&k, &tag, unsigned(200, &empty), 10),
        PullResult::Failed(WireError::NoMac)
    ));
    assert!(matches!(
        set.apply_pull(&k, &tag, unsigned(500, &empty), 10),
        PullResult::Failed(_)
    ));
    assert!(set.is_revoked("i", Some("alice"), None, 10));
    // Over the bound: refused whole, set kept.
    let too_many = RevocationList {
        revocations: (0..=MAX_REVOCATIONS)
            .map(|i| revocation(RevocationTarget::Subject, &format!("u{i}"), None, 1000))
            .collect(),
    };
    assert_eq!(
        pull(&mut set, &k, 200, &too_many, 10),
        PullResult::Failed(WireError::TooMany)
    );
    assert_eq!(set.len(), 1);
}

#[test]
fn revocations_never_outlive_the_memory_bound() {
    let mut set = RevocationSet::new();
    set.replace(
        RevocationList {
            revocations: vec![revocation(RevocationTarget::Subject, "a", None, i64::MAX)],
        },
        None,
        0,
    );
    let week = i64::try_from(MAX_REVOCATION_TTL_SECONDS * 1000).unwrap();
    assert!(set.is_revoked("i", Some("a"), None, week - 1));
    assert!(!set.is_revoked("i", Some("a"), None, week));
}

// ------------------------------------------------------------------ ended sessions

#[test]
fn ended_sessions_are_bounded_and_keyed_by_sign_in() {
    let mut e = EndedSessions::new(2);
    e.insert([1; 16], Some(10), Denial::SessionIdle);
    assert_eq!(e.get([1; 16], Some(10)), Some(Denial::SessionIdle));
    assert_eq!(e.get([1; 16], Some(11)), None, "a re-login is asked afresh");
    e.insert([2; 16], None, Denial::SessionRevoked);
    e.insert([3; 16], None, Denial::SessionIdle);
    assert_eq!(e.len(), 2);
    assert_eq!(e.get([1; 16], Some(10)), None, "the oldest went first");
}

// ------------------------------------------------------------------ policy

#[test]
fn policy_authority_is_optional_validated_and_has_its_own_key() {
    use crate::policy::schema::Session;
    let s: Session = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(s.authority, None, "old policies keep working");
    let s: Session =
        serde_json::from_value(serde_json::json!({"authority": {"cluster": "audit-collector"}}))
            .unwrap();
    let a = s.authority.unwrap();
    assert_eq!(a.on_unavailable, OnAuthorityUnavailable::Local);
    assert_eq!(a.timeout_ms, 250);
    assert_eq!(a.revocations_refresh_ms, 2000);
    assert_eq!(a.key_env, "HIPAA_SESSION_AUTHORITY_KEY");
    assert!(serde_json::from_value::<Session>(
        serde_json::json!({"authority": {"cluster": "c", "onUnavailable": "open"}})
    )
    .is_err());
}
