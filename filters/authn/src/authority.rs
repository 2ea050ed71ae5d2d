//! The session authority's host calls (DESIGN.md, "What the shell must do"): the check a
//! paused request waits for, and the revocation pull on the root's timer. Every decision is
//! `hipaa_core::authn::authority`'s; this file only sends, receives and counts.

use hipaa_core::audit::MacKeyRing;
use hipaa_core::authn::authority::wire::{
    seal, Purpose, CHECK_PATH, MAC_HEADER, MAX_ANSWER_BYTES, MAX_REVOCATIONS_BODY,
    REVOCATIONS_PATH, TIME_HEADER,
};
use hipaa_core::authn::authority::EndedSessions;
use hipaa_core::authn::authority::{
    call_status, Combined, PullAnswer, PullResult, RevocationSet, SessionCheck,
};
use hipaa_core::authn::session::{self, SessionKey};
use hipaa_core::policy::schema::SessionAuthority;
use hipaa_core::policy::Policy;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};
use std::time::Duration;

/// Counters defined at start so `/stats` shows zeros.
pub const COUNTERS: &[&str] = &[
    "hipaa_authn.session_authority.active",
    "hipaa_authn.session_authority.idle",
    "hipaa_authn.session_authority.expired",
    "hipaa_authn.session_authority.revoked",
    "hipaa_authn.session_authority.unavailable",
    "hipaa_authn.revocations.pull_ok",
    "hipaa_authn.revocations.pull_failed",
    "hipaa_authn.deny.session_revoked",
    "hipaa_authn.deny.session_idle",
    "hipaa_authn.deny.session_authority_unavailable",
];

/// The configured authority and its key.
pub struct Authority {
    pub config: SessionAuthority,
    pub ring: MacKeyRing,
    host: String,
}

impl Authority {
    /// `Ok(None)` without `identity.session.authority`; `Err(line)` when it is configured but
    /// its key variable is missing or unusable (authn refuses to start).
    pub fn load(policy: &Policy) -> Result<Option<Authority>, String> {
        let Some(config) = policy.spec.identity.session.authority.clone() else {
            return Ok(None);
        };
        let text = std::env::var(&config.key_env).map_err(|_| {
            format!(
                "the session-authority key variable {} (spec.identity.session.authority.keyEnv) is not set for the Wasm VM; pass it with vm_config.environment_variables",
                config.key_env
            )
        })?;
        let ring = MacKeyRing::parse(&text).map_err(|e| {
            format!(
                "{} (named by spec.identity.session.authority.keyEnv): {e}",
                config.key_env
            )
        })?;
        for name in COUNTERS {
            hipaa_host::define_counter(name);
        }
        Ok(Some(Authority {
            host: config
                .authority
                .clone()
                .unwrap_or_else(|| config.cluster.clone()),
            config,
            ring,
        }))
    }

    /// Sends the check (from the context that will be paused: its answer comes back to that
    /// context). None when the host refused the call.
    pub fn dispatch_check(
        &self,
        check: SessionCheck,
        policy: &Policy,
        now_ms: i64,
    ) -> Option<PendingCheck> {
        let body = check
            .request(&policy.spec.identity.session, now_ms)
            .encode();
        let (mac, tag) = seal(&self.ring, Purpose::CheckRequest, &[&body]);
        let headers = vec![
            (":method", "POST"),
            (":path", CHECK_PATH),
            (":authority", self.host.as_str()),
            ("content-type", "application/json"),
            (MAC_HEADER, mac.as_str()),
        ];
        let token = hostcalls::dispatch_http_call(
            &self.config.cluster,
            headers,
            Some(&body),
            vec![],
            Duration::from_millis(self.config.timeout_ms),
        )
        .ok()?;
        Some(PendingCheck { token, tag, check })
    }

    /// Settles a check: `answer` None when the call could not be sent (as a timeout).
    pub fn settle(
        &self,
        pending: &PendingCheck,
        answer: Option<usize>,
        policy: &Policy,
        ended: &mut EndedSessions,
    ) -> Combined {
        let (status, mac, body) = match answer {
            Some(body_size) => (
                call_status(hipaa_host::call_response_status().as_deref()),
                hipaa_host::header_bytes(MapType::HttpCallResponseHeaders, MAC_HEADER),
                hipaa_host::call_response_body(body_size, MAX_ANSWER_BYTES).unwrap_or_default(),
            ),
            None => (0, None, Vec::new()),
        };
        let combined = pending.check.settle(
            &self.ring,
            &pending.tag,
            status,
            mac.as_deref(),
            &body,
            &self.config,
            policy.spec.identity.session.absolute_timeout_seconds,
            ended,
        );
        hipaa_host::count(&format!(
            "hipaa_authn.session_authority.{}",
            combined.counter
        ));
        combined
    }
}

/// A check in flight for a paused request.
pub struct PendingCheck {
    pub token: u32,
    tag: [u8; 32],
    pub check: SessionCheck,
}

impl PendingCheck {
    /// A check the host would not send: settled as unanswered.
    pub fn unsent(check: SessionCheck) -> PendingCheck {
        PendingCheck {
            token: 0,
            tag: [0; 32],
            check,
        }
    }
}

/// Brings the local session entry to the mesh-wide last activity (compare-and-swap, as
/// `touch`), so the next request passes here without a call.
pub fn revive(key: &SessionKey, last_seen_secs: u64) {
    let bucket_key = key.bucket_key();
    for _ in 0..16 {
        let Ok((bytes, cas)) = hipaa_host::shared_read(&bucket_key) else {
            return;
        };
        let updated = session::revive(bytes.as_deref().unwrap_or(&[]), key, last_seen_secs);
        match hipaa_host::shared_set(&bucket_key, &updated, cas) {
            Err(Status::CasMismatch) => continue,
            _ => return,
        }
    }
}

/// The revocation pull of one worker VM: at most one in flight, every `revocationsRefreshMs`.
#[derive(Default)]
pub struct RevocationPuller {
    in_flight: Option<(u32, [u8; 32], i64)>,
    next_due_ms: i64,
}

impl RevocationPuller {
    /// Called on every root tick: sends the pull when due and none is in flight (one whose
    /// answer never came is given up after the authority's timeout plus a second).
    pub fn tick(&mut self, authority: &Authority, set: &RevocationSet, now_ms: i64) {
        let give_up_ms = i64::try_from(authority.config.timeout_ms)
            .unwrap_or(5000)
            .saturating_add(1000);
        if let Some((_, _, since)) = self.in_flight {
            if now_ms.saturating_sub(since) < give_up_ms {
                return;
            }
            self.in_flight = None;
        }
        if now_ms < self.next_due_ms {
            return;
        }
        let refresh = i64::try_from(authority.config.revocations_refresh_ms).unwrap_or(2000);
        self.next_due_ms = now_ms.saturating_add(refresh);
        let time = now_ms.to_string();
        let (mac, tag) = seal(
            &authority.ring,
            Purpose::RevocationsRequest,
            &[time.as_bytes()],
        );
        let mut headers = vec![
            (":method", "GET"),
            (":path", REVOCATIONS_PATH),
            (":authority", authority.host.as_str()),
            (TIME_HEADER, time.as_str()),
            (MAC_HEADER, mac.as_str()),
        ];
        if let Some(etag) = set.etag() {
            headers.push(("if-none-match", etag));
        }
        match hostcalls::dispatch_http_call(
            &authority.config.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(authority.config.timeout_ms.max(1000)),
        ) {
            Ok(token) => self.in_flight = Some((token, tag, now_ms)),
            Err(_) => hipaa_host::count("hipaa_authn.revocations.pull_failed"),
        }
    }

    /// The answer to a pull; false when `token` is not this puller's.
    pub fn on_response(
        &mut self,
        token: u32,
        body_size: usize,
        authority: &Authority,
        set: &mut RevocationSet,
        now_ms: i64,
    ) -> bool {
        let Some((t, tag, _)) = self.in_flight else {
            return false;
        };
        if t != token {
            return false;
        }
        self.in_flight = None;
        let status = call_status(hipaa_host::call_response_status().as_deref());
        let mac = hipaa_host::header_bytes(MapType::HttpCallResponseHeaders, MAC_HEADER);
        let etag = hipaa_host::header_bytes(MapType::HttpCallResponseHeaders, "etag");
        let body =
            hipaa_host::call_response_body(body_size, MAX_REVOCATIONS_BODY).unwrap_or_default();
        let answer = PullAnswer {
            status,
            mac_header: mac.as_deref(),
            etag: etag.as_deref(),
            body: &body,
        };
        match set.apply_pull(&authority.ring, &tag, answer, now_ms) {
            PullResult::Updated(_) | PullResult::Unchanged => {
                hipaa_host::count("hipaa_authn.revocations.pull_ok")
            }
            PullResult::Failed(e) => {
                hipaa_host::count("hipaa_authn.revocations.pull_failed");
                log::warn!("hipaa-authn: revocation pull failed (status {status}): {e}; keeping the list held");
            }
        }
        true
    }
}
