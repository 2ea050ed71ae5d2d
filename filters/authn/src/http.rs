//! HTTP context: gather the request facts, ask core, apply the verdict.

use crate::host::{self, SharedSessions};
use crate::root::Shared;
use hipaa_core::authn::{self, CacheOutcome, RequestFacts};
use hipaa_core::denial::Denial;
use hipaa_core::headers;
use hipaa_core::jwt::envoy::EnvoyPayload;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

pub struct AuthnHttp {
    state: Rc<Shared>,
}

impl AuthnHttp {
    pub fn new(state: Rc<Shared>) -> AuthnHttp {
        AuthnHttp { state }
    }
}

impl Context for AuthnHttp {}

fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hipaa_host::set_header(MapType::HttpRequestHeaders, name, value);
}

/// Removes every incoming `x-hipaa-*` header (no spoofing, on every route).
fn strip_reserved(request_headers: &hipaa_host::Headers) {
    for name in request_headers.names() {
        if headers::is_reserved(name) {
            set_request_header(name, None);
        }
    }
}

/// Sends a denial's local reply, with its reason on the request for the audit record.
fn refuse(denial: &Denial, request_id: &str, allowed_methods: &[String]) -> Action {
    host::count("hipaa_authn.deny");
    host::count(&format!("hipaa_authn.deny.{}", denial.reason()));
    set_request_header(headers::DENIAL, Some(denial.reason()));
    let reply = denial.reply(request_id, allowed_methods);
    let _ = hipaa_host::local_reply_owned(reply.status, &reply.headers, reply.body.as_bytes());
    Action::Pause
}

/// The HTTP context of a root context without a valid policy (Envoy asked for one anyway):
/// every request is refused with `filter_unconfigured` rather than let through.
pub struct UnconfiguredHttp;

impl Context for UnconfiguredHttp {}

impl HttpContext for UnconfiguredHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request_headers = hipaa_host::Headers::read(MapType::HttpRequestHeaders);
        strip_reserved(&request_headers);
        let request_id = request_headers
            .text(headers::REQUEST_ID)
            .unwrap_or_default();
        refuse(&Denial::Unconfigured, &request_id, &[])
    }
}

impl HttpContext for AuthnHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Values as bytes: one that is not UTF-8 (obs-text, which Envoy forwards) is read with
        // U+FFFD in place of its bad bytes, so a garbled credential is still a credential (and
        // fails verification) rather than a panic or an absent header.
        let request_headers = hipaa_host::Headers::read(MapType::HttpRequestHeaders);
        strip_reserved(&request_headers);
        let policy = &self.state.policy;
        let bg_header = policy
            .spec
            .identity
            .break_glass
            .as_ref()
            .map(|bg| bg.header.as_str());
        let mut facts = RequestFacts::default();
        let mut request_id = String::new();
        for (name, value) in request_headers.lossy() {
            match name {
                ":method" => facts.method = value,
                ":path" => facts.path = value,
                headers::AUTHORIZATION => facts.authorization.push(value),
                headers::REQUEST_ID => request_id = value,
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
        let verdict = {
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
        for (name, value) in &verdict.set_headers {
            set_request_header(name, Some(value));
        }
        let Some(denial) = verdict.denial else {
            host::count("hipaa_authn.allow");
            if verdict.emergency.is_some() {
                host::count("hipaa_authn.break_glass");
            }
            return Action::Continue;
        };
        refuse(&denial, &request_id, &verdict.allowed_methods)
    }
}
