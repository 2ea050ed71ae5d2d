//! When authn asks the session authority, what it does with the answer, and what the authority
//! itself decides.
//!
//! The common path makes no call: a session this Envoy saw active within the idle timeout
//! passes on its local view. Only a session seen here for the first time, or one idle here past
//! the timeout (the user may have been active on another replica), is checked. A session ends
//! (idle) only when the mesh-wide view agrees.

use serde::{Deserialize, Serialize};

use super::wire::{open, CheckAnswer, CheckRequest, Purpose, MAX_CLOCK_SKEW_MS};
use crate::audit::MacKeyRing;
use crate::authn::session::SessionState;
use crate::denial::Denial;
use crate::policy::schema::OnAuthorityUnavailable;

/// The authority's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityDecision {
    /// Active somewhere in the mesh within the idle timeout (or never seen: a new session);
    /// the authority has recorded this sighting as activity.
    Active,
    /// No activity anywhere in the mesh for longer than the idle timeout.
    Idle,
    /// Past the absolute timeout (counted from `authTimeMs`).
    Expired,
    /// On the revocation list.
    Revoked,
}

impl AuthorityDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityDecision::Active => "active",
            AuthorityDecision::Idle => "idle",
            AuthorityDecision::Expired => "expired",
            AuthorityDecision::Revoked => "revoked",
        }
    }
}

/// What this Envoy's own session store says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalView {
    /// Never seen here (or forgotten by its bucket).
    FirstSight,
    /// Seen here within the idle timeout.
    Active,
    /// Seen here, but idle past the timeout (or marked so earlier).
    LocallyIdle,
}

impl From<SessionState> for LocalView {
    fn from(s: SessionState) -> LocalView {
        match s {
            SessionState::New => LocalView::FirstSight,
            SessionState::Active => LocalView::Active,
            SessionState::Expired => LocalView::LocallyIdle,
        }
    }
}

/// Whether the shell must pause the request and ask the authority.
pub fn must_consult(view: LocalView) -> bool {
    !matches!(view, LocalView::Active)
}

/// What came back from the check call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A 200 whose MAC verified and whose body parsed.
    Answer(CheckAnswer),
    /// No answer within `timeoutMs`, a connection failure, any other status, a bad or missing
    /// MAC, an unparsable body.
    Unavailable,
}

impl Reply {
    /// Judges the check call's answer: `status` (0 for none: timeout, reset), the answer's
    /// `x-hipaa-session-mac` header and body, against the tag of the request sent. Anything but
    /// a 200 with a valid MAC and body is [`Reply::Unavailable`].
    pub fn read(
        ring: &MacKeyRing,
        request_tag: &[u8; 32],
        status: u32,
        mac_header: Option<&[u8]>,
        body: &[u8],
    ) -> Reply {
        if status != 200 {
            return Reply::Unavailable;
        }
        if open(ring, Purpose::CheckAnswer, mac_header, &[request_tag, body]).is_err() {
            return Reply::Unavailable;
        }
        CheckAnswer::parse(body).map_or(Reply::Unavailable, Reply::Answer)
    }
}

/// What the shell does with the paused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Resume it. With `Some(ms)`, the mesh-wide last activity: revive the local session entry
    /// to it (`session::revive`), so the next request passes locally.
    Allow { revive_to_ms: Option<i64> },
    /// Refuse it with this denial. `remember_ended`: the authority ended the session; the shell
    /// adds it to [`super::EndedSessions`] so a replay costs no new call.
    Deny {
        denial: Denial,
        remember_ended: bool,
    },
}

/// An outcome and the counter the shell increments (`hipaa_authn.session_authority.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Combined {
    pub outcome: Outcome,
    pub counter: &'static str,
}

/// Combines the local view with the authority's reply. `absolute_timeout_seconds` is the
/// step-up challenge's `max_age` when the authority says the sign-in is too old.
pub fn combine(
    view: LocalView,
    reply: Reply,
    on_unavailable: OnAuthorityUnavailable,
    absolute_timeout_seconds: u64,
) -> Combined {
    let deny = |denial, remember_ended, counter| Combined {
        outcome: Outcome::Deny {
            denial,
            remember_ended,
        },
        counter,
    };
    match reply {
        Reply::Answer(a) => match a.decision {
            AuthorityDecision::Active => Combined {
                outcome: Outcome::Allow {
                    revive_to_ms: a.last_activity_ms,
                },
                counter: "active",
            },
            AuthorityDecision::Idle => deny(Denial::SessionIdle, true, "idle"),
            AuthorityDecision::Expired => deny(
                Denial::AuthenticationTooOld {
                    max_age: absolute_timeout_seconds,
                },
                true,
                "expired",
            ),
            AuthorityDecision::Revoked => deny(Denial::SessionRevoked, true, "revoked"),
        },
        Reply::Unavailable => match (on_unavailable, view) {
            (OnAuthorityUnavailable::Deny, _) => {
                deny(Denial::SessionAuthorityUnavailable, false, "unavailable")
            }
            // What a lone Envoy decides (the behaviour without an authority).
            (OnAuthorityUnavailable::Local, LocalView::FirstSight | LocalView::Active) => {
                Combined {
                    outcome: Outcome::Allow { revive_to_ms: None },
                    counter: "unavailable",
                }
            }
            (OnAuthorityUnavailable::Local, LocalView::LocallyIdle) => {
                deny(Denial::SessionIdle, false, "unavailable")
            }
        },
    }
}

/// The authority's decision for one check (the collector runs this), given the last activity
/// the mesh has stored for the session, whether it is revoked, and the collector's clock.
/// Returns the answer and, when the session is active, the time to record as its activity.
///
/// The last activity is the newest of: what the authority stored (from ingested access records
/// and earlier checks), the caller's own last sighting, and the sign-in (`authTimeMs`: a
/// re-login that reuses the `sid` is activity). Caller times are clamped to the collector's
/// clock plus the allowed skew, so a caller cannot push a session's activity into the future.
pub fn authority_decide(
    req: &CheckRequest,
    stored_last_ms: Option<i64>,
    revoked: bool,
    now_ms: i64,
) -> (CheckAnswer, Option<i64>) {
    let ceiling = now_ms.saturating_add(MAX_CLOCK_SKEW_MS);
    let last = [
        stored_last_ms,
        req.local_last_activity_ms.map(|t| t.min(ceiling)),
        req.auth_time_ms.map(|t| t.min(ceiling)),
    ]
    .into_iter()
    .flatten()
    .max();
    let answer = |decision| CheckAnswer {
        decision,
        last_activity_ms: last,
    };
    if revoked {
        return (answer(AuthorityDecision::Revoked), None);
    }
    let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if req.absolute_timeout_seconds > 0 {
        if let Some(auth) = req.auth_time_ms {
            if now_ms.saturating_sub(auth) > ms(req.absolute_timeout_seconds) {
                return (answer(AuthorityDecision::Expired), None);
            }
        }
    }
    if let Some(last) = last {
        if req.idle_timeout_seconds > 0
            && now_ms.saturating_sub(last) > ms(req.idle_timeout_seconds)
        {
            return (answer(AuthorityDecision::Idle), None);
        }
    }
    let recorded = last.map_or(now_ms, |l| l.max(now_ms));
    (
        CheckAnswer {
            decision: AuthorityDecision::Active,
            last_activity_ms: Some(recorded),
        },
        Some(recorded),
    )
}
