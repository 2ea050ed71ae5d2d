//! HTTP context: gather the request facts, ask core, apply the verdict.

use crate::host::{self, SharedSessions};
use crate::root::Shared;
use hipaa_core::authn::{self, CacheOutcome, RequestFacts};
use hipaa_core::headers;
use hipaa_core::jwt::envoy::EnvoyPayload;
use proxy_wasm::hostcalls;
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
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

impl HttpContext for AuthnHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request_headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
        // No spoofing: every incoming x-hipaa-* header goes, on every route.
        for (name, _) in &request_headers {
            if headers::is_reserved(name) {
                set_request_header(name, None);
            }
        }
        let policy = &self.state.policy;
        let bg_header = policy
            .spec
            .identity
            .break_glass
            .as_ref()
            .map(|bg| bg.header.as_str());
        let mut facts = RequestFacts::default();
        let mut request_id = String::new();
        for (name, value) in request_headers {
            match name.as_str() {
                ":method" => facts.method = value,
                ":path" => facts.path = value,
                headers::AUTHORIZATION => facts.authorization.push(value),
                headers::REQUEST_ID => request_id = value,
                n if Some(n) == bg_header => facts.break_glass = Some(value),
                n if hipaa_core::patient::is_patient_header(&policy.routes, n) => {
                    facts.patient_headers.push((name.clone(), value));
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
        host::count("hipaa_authn.deny");
        host::count(&format!("hipaa_authn.deny.{}", denial.reason()));
        set_request_header(headers::DENIAL, Some(denial.reason()));
        let reply = denial.reply(&request_id, &verdict.allowed_methods);
        let reply_headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ =
            hostcalls::send_http_response(reply.status, reply_headers, Some(reply.body.as_bytes()));
        Action::Pause
    }
}
