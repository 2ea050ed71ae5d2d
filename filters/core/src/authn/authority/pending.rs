//! A session check the authn decision could not settle alone (first sight here, or locally
//! idle): what the shell sends to the authority, and what it does with the answer. The shell
//! only dispatches the call, pauses the request and hands the answer's bytes back here.

use super::decision::{combine, Combined, LocalView, Outcome, Reply};
use super::ended::EndedSessions;
use super::wire::CheckRequest;
use crate::audit::MacKeyRing;
use crate::authn::session::SessionKey;
use crate::policy::schema::{Session, SessionAuthority};

/// Seconds to milliseconds for the wire (saturating; the clock is far from `i64::MAX`).
pub fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The facts of one pending check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCheck {
    /// The local session entry (revived on an `active` answer).
    pub key: SessionKey,
    pub view: LocalView,
    pub issuer: String,
    pub session: String,
    pub subject: String,
    /// This Envoy's last sighting (None on first sight).
    pub local_last_seen_ms: Option<i64>,
    /// The sign-in (`auth_time`, or `iat` where the policy accepts it); the key of
    /// [`EndedSessions`] together with the session.
    pub auth_time_ms: Option<i64>,
}

impl SessionCheck {
    /// The body of `POST /v1/sessions/check` at `now_ms`.
    pub fn request(&self, session: &Session, now_ms: i64) -> CheckRequest {
        CheckRequest {
            issuer: self.issuer.clone(),
            session: self.session.clone(),
            subject: self.subject.clone(),
            local_last_activity_ms: self.local_last_seen_ms,
            now_ms,
            idle_timeout_seconds: session.idle_timeout_seconds,
            absolute_timeout_seconds: session.absolute_timeout_seconds,
            auth_time_ms: self.auth_time_ms,
        }
    }

    /// Judges the answer (`status` 0: none within `timeoutMs`) to the request sealed with
    /// `request_tag`, combines it with the local view, and remembers a session the authority
    /// ended. The shell counts `hipaa_authn.session_authority.<counter>` and applies the outcome.
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &self,
        ring: &MacKeyRing,
        request_tag: &[u8; 32],
        status: u32,
        mac_header: Option<&[u8]>,
        body: &[u8],
        authority: &SessionAuthority,
        absolute_timeout_seconds: u64,
        ended: &mut EndedSessions,
    ) -> Combined {
        let reply = Reply::read(ring, request_tag, status, mac_header, body);
        let combined = combine(
            self.view,
            reply,
            authority.on_unavailable,
            absolute_timeout_seconds,
        );
        if let Outcome::Deny {
            denial,
            remember_ended: true,
        } = combined.outcome
        {
            ended.insert(self.key.id(), self.auth_time_ms, denial);
        }
        combined
    }
}

/// The HTTP status of a call's `:status` header text; 0 when absent or not a number (a
/// timeout or a reset has none).
pub fn call_status(text: Option<&str>) -> u32 {
    text.and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|s| (100..=599).contains(s))
        .unwrap_or(0)
}
