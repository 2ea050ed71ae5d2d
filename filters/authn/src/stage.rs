//! The authn stage: the facts of one request read from a header map the caller already holds,
//! the decision asked of `hipaa_core::authn::decide`, the counters and the JWKS refetch. Both
//! the single-filter root (`hipaa-authn`) and the combined one (`hipaa-mesh`) call it; what
//! each does with the verdict (headers for the next filter, or facts handed on in memory) is
//! theirs.

use crate::authority::{self, PendingCheck};
use crate::host::{self, SharedSessions};
use crate::root::Shared;
use hipaa_core::authn::authority::Outcome;
use hipaa_core::authn::{self, CacheOutcome, RequestFacts, Verdict};
use hipaa_core::denial::Denial;
use hipaa_core::headers;
use hipaa_core::jwt::envoy::EnvoyPayload;
use hipaa_host::Headers;
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

pub struct AuthnStage {
    state: Rc<Shared>,
    /// The session check this request waits for (the request is paused until its answer).
    pending: Option<PendingCheck>,
}

/// What the answer to a session check means for the paused request.
enum CheckSettled {
    /// Resume the request.
    Resume,
    /// Refuse it with this denial (counted already).
    Deny(Denial),
}

impl AuthnStage {
    pub fn new(state: Rc<Shared>) -> AuthnStage {
        AuthnStage {
            state,
            pending: None,
        }
    }

    /// Whether the verdict just returned by [`AuthnStage::decide`] waits for the session
    /// authority: the caller pauses the request and hands the call's answer to
    /// [`AuthnStage::on_call_response`].
    pub fn awaiting_authority(&self) -> bool {
        self.pending.is_some()
    }

    /// The answer to a call this context dispatched, applied to the paused request: it resumes,
    /// or it is refused with the denial's reply. Before the reply, `refusing` is handed the
    /// denial (to pass its reason on: a request header, or the combined filter's record) and
    /// gives the request id the reply names. Nothing happens when `token` is not the pending
    /// check's (another stage's call).
    pub fn on_call_response(
        &mut self,
        token: u32,
        body_size: usize,
        refusing: impl FnOnce(&Denial) -> String,
    ) {
        if self.pending.as_ref().map(|p| p.token) != Some(token) {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        match self.settle(&pending, Some(body_size)) {
            CheckSettled::Resume => {
                if !hipaa_host::resume_request() {
                    hipaa_host::log_warn("hipaa-authn: could not resume the request");
                }
            }
            CheckSettled::Deny(denial) => {
                let request_id = refusing(&denial);
                send_denial(&denial, &request_id, &[]);
            }
        }
    }

    fn settle(&self, pending: &PendingCheck, answer: Option<usize>) -> CheckSettled {
        let Some(authority) = &self.state.authority else {
            return CheckSettled::Resume;
        };
        let combined = {
            let mut auth = self.state.auth.borrow_mut();
            authority.settle(pending, answer, &self.state.policy, &mut auth.ended)
        };
        match combined.outcome {
            Outcome::Allow { revive_to_ms } => {
                if let Some(ms) = revive_to_ms {
                    authority::revive(&pending.check.key, u64::try_from(ms / 1000).unwrap_or(0));
                }
                host::count("hipaa_authn.allow");
                CheckSettled::Resume
            }
            Outcome::Deny { denial, .. } => {
                count_denial(&denial);
                CheckSettled::Deny(denial)
            }
        }
    }

    /// The verdict for a request whose headers are `request_headers` (read before any
    /// `x-hipaa-*` header was removed: none of them is a fact authn reads). With a session
    /// check pending (see [`AuthnStage::awaiting_authority`]) the verdict has no denial yet.
    pub fn decide(&mut self, request_headers: &Headers) -> Verdict {
        let policy = &self.state.policy;
        let bg_header = policy
            .spec
            .identity
            .break_glass
            .as_ref()
            .map(|bg| bg.header.as_str());
        // Values as text with U+FFFD for bytes that are not UTF-8: a garbled credential is
        // still a credential (and fails verification) rather than a panic or an absent header.
        let mut facts = RequestFacts::default();
        for (name, value) in request_headers.lossy() {
            match name {
                ":method" => facts.method = value,
                ":path" => facts.path = value,
                headers::AUTHORIZATION => facts.authorization.push(value),
                n if Some(n) == bg_header => facts.break_glass = Some(value),
                n if hipaa_core::patient::is_patient_header(&policy.routes, n) => {
                    facts.patient_headers.push((name.to_string(), value));
                }
                _ => {}
            }
        }
        // `verification: envoy`: what Envoy's jwt_authn verified (no host call otherwise).
        facts.envoy_payload = EnvoyPayload::read(&policy.spec.identity, host::envoy_claim);

        let now = host::now_secs();
        let mut verdict = {
            let mut auth = self.state.auth.borrow_mut();
            if let Some(fetcher) = self.state.jwks.borrow_mut().as_mut() {
                fetcher.apply_missing(&mut auth);
            }
            authn::decide(&facts, policy, &mut auth, &mut SharedSessions, now)
        };
        match verdict.cache {
            CacheOutcome::Hit => host::count("hipaa_authn.token_cache.hit"),
            CacheOutcome::Miss => host::count("hipaa_authn.token_cache.miss"),
            CacheOutcome::NotUsed => {}
        }
        if let (true, Some(fetcher)) = (verdict.refetch_jwks, self.state.jwks.borrow().as_ref()) {
            fetcher.request_refetch_all(now);
        }
        // First sight or locally idle with an authority: ask it (the request is paused).
        if let (None, Some(check), Some(authority)) = (
            &verdict.denial,
            verdict.consult.take(),
            &self.state.authority,
        ) {
            match authority.dispatch_check(check.clone(), policy, hipaa_host::unix_millis()) {
                Some(pending) => {
                    self.pending = Some(pending);
                    return verdict;
                }
                // Not sent: settled as an unanswered check (onUnavailable decides).
                None => {
                    let unsent = PendingCheck::unsent(check);
                    if let CheckSettled::Deny(denial) = self.settle(&unsent, None) {
                        verdict.denial = Some(denial);
                    }
                    // settle counted the outcome.
                    return verdict;
                }
            }
        }
        match &verdict.denial {
            None => {
                host::count("hipaa_authn.allow");
                if verdict.emergency.is_some() {
                    host::count("hipaa_authn.break_glass");
                }
            }
            Some(denial) => count_denial(denial),
        }
        verdict
    }
}

/// The prefix of the per-reason denial counters (`hipaa_authn.deny.<reason>`).
const DENY: &str = "hipaa_authn.deny";

fn count_denial(denial: &Denial) {
    host::count("hipaa_authn.deny");
    hipaa_host::count_reason(DENY, denial.reason());
}

/// Sets (or removes) one request header; the host refuses only outside the headers callback.
pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hipaa_host::set_header(MapType::HttpRequestHeaders, name, value);
}

/// Removes every `x-hipaa-*` header of `request_headers` from the request (no spoofing).
pub fn strip_reserved(request_headers: &Headers) {
    for name in request_headers.names() {
        if headers::is_reserved(name) {
            set_request_header(name, None);
        }
    }
}

/// The identity headers of an allowed (or identified, then refused) request, for the upstream.
pub fn set_identity_headers(verdict: &Verdict) {
    for (name, value) in &verdict.set_headers {
        set_request_header(name, Some(value));
    }
}

/// The denial's local reply (core builds it: status, challenge, reason, JSON body).
pub fn send_denial(denial: &Denial, request_id: &str, allowed_methods: &[String]) -> Action {
    if !hipaa_host::send_reply(&denial.reply(request_id, allowed_methods)) {
        hipaa_host::log_error("hipaa-authn: could not send the local reply");
    }
    Action::Pause
}

/// Counts and sends the reply of a request refused before any decision (no valid policy).
pub fn refuse_unconfigured(request_id: &str) -> Action {
    count_denial(&Denial::Unconfigured);
    send_denial(&Denial::Unconfigured, request_id, &[])
}
