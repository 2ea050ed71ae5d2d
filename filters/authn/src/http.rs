//! HTTP context of the single-filter root `hipaa-authn`: read the request headers, run the
//! authn stage, hand the verdict on as request headers (identity for the upstream,
//! `x-hipaa-denial` for the audit filter in front).

use crate::root::Shared;
use crate::stage::{self, AuthnStage};
use hipaa_core::denial::Denial;
use hipaa_core::headers;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

pub struct AuthnHttp {
    stage: AuthnStage,
}

impl AuthnHttp {
    pub fn new(state: Rc<Shared>) -> AuthnHttp {
        AuthnHttp {
            stage: AuthnStage::new(state),
        }
    }
}

impl Context for AuthnHttp {
    /// The session authority's answer to the check this request waits for.
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        self.stage.on_call_response(token, body, |denial| {
            stage::set_request_header(headers::DENIAL, Some(denial.reason()));
            hipaa_host::header_text(MapType::HttpRequestHeaders, headers::REQUEST_ID)
                .unwrap_or_default()
        });
    }
}

/// The HTTP context of a root context without a valid policy (Envoy asked for one anyway):
/// every request is refused with `filter_unconfigured` rather than let through.
pub struct UnconfiguredHttp;

impl Context for UnconfiguredHttp {}

impl HttpContext for UnconfiguredHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request_headers = hipaa_host::Headers::read(MapType::HttpRequestHeaders);
        stage::strip_reserved(&request_headers);
        let request_id = request_headers
            .text(headers::REQUEST_ID)
            .unwrap_or_default();
        stage::set_request_header(headers::DENIAL, Some(Denial::Unconfigured.reason()));
        stage::refuse_unconfigured(&request_id)
    }
}

impl HttpContext for AuthnHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request_headers = hipaa_host::Headers::read(MapType::HttpRequestHeaders);
        stage::strip_reserved(&request_headers);
        let verdict = self.stage.decide(&request_headers);
        stage::set_identity_headers(&verdict);
        let Some(denial) = &verdict.denial else {
            if self.stage.awaiting_authority() {
                return Action::Pause;
            }
            return Action::Continue;
        };
        // The reason on the request, for the audit filter in front.
        stage::set_request_header(headers::DENIAL, Some(denial.reason()));
        let request_id = request_headers
            .text(headers::REQUEST_ID)
            .unwrap_or_default();
        stage::send_denial(denial, &request_id, &verdict.allowed_methods)
    }
}
