//! The combined HTTP context: audit, transport and authn as stages of one context, in the
//! order of the three-filter chain (audit first on the request and last on the response).
//!
//! - Request headers: the map is read once and every stage reads its facts from it; the
//!   connection's facts come from the VM's per-connection cache. Audit gathers the record's
//!   facts and removes the client's `x-hipaa-*` headers (the one strip), then transport
//!   decides, then — on an inbound listener only — authn. The first refusal answers; later
//!   stages do not run.
//! - Between the stages nothing goes through request headers: transport's connection facts,
//!   authn's identity and the refusing stage's reason are kept in [`Annotations`] for the
//!   record. Only the identity headers the application reads (`x-hipaa-subject`, `-roles`,
//!   `-session`, `-amr`, `-break-glass`) are set on the request.
//! - Body and response callbacks go to transport (verification, signing), then the response
//!   headers to audit; `on_log` seals the record. On an inference route the record states the
//!   response body by its SHA-256: transport's signing hash when it signs (with its key id),
//!   else audit's own streaming hash — the body is hashed once, never held.

use crate::root::Stages;
use hipaa_audit::http::{Annotations, AuditHttp};
use hipaa_authn::stage::{self, AuthnStage};
use hipaa_core::headers;
use hipaa_core::transport::Direction;
use hipaa_host::Headers;
use hipaa_transport::http::TransportHttp;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

pub struct MeshHttp {
    audit: AuditHttp,
    transport: TransportHttp,
    authn: AuthnStage,
    stages: Rc<Stages>,
    annotations: Annotations,
    /// authn refused: the request is over, transport's body callbacks have nothing to do.
    authn_replied: bool,
    /// The request id, for a refusal sent after a session check.
    request_id: String,
}

impl MeshHttp {
    pub fn new(stages: Rc<Stages>) -> MeshHttp {
        MeshHttp {
            audit: AuditHttp::new(stages.audit.clone()),
            transport: TransportHttp::in_memory(Some(stages.transport.clone())),
            authn: AuthnStage::new(stages.authn.clone()),
            stages,
            annotations: Annotations::default(),
            authn_replied: false,
            request_id: String::new(),
        }
    }
}

impl Context for MeshHttp {
    /// The session authority's answer to the check this request waits for (a call
    /// dispatched from this context is answered here, not on the root).
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        self.authn.on_call_response(token, body, |denial| {
            self.annotations
                .set(headers::DENIAL, denial.reason().to_string());
            self.authn_replied = true;
            self.request_id.clone()
        });
    }
}

impl HttpContext for MeshHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let request_headers = Headers::read(MapType::HttpRequestHeaders);
        let connection = self.stages.connection();
        if let Action::Pause = self.audit.request_headers(
            &request_headers,
            &connection.for_audit(),
            connection.direction,
        ) {
            return Action::Pause;
        }
        let action = self.transport.request_headers(
            &request_headers,
            &connection.for_transport(),
            end_of_stream,
        );
        for (name, value) in self.transport.annotations() {
            self.annotations.set(name, value.clone());
        }
        if let Some(code) = self.transport.denied() {
            self.annotations.set(headers::DENIAL, code.to_string());
            return action;
        }
        // The app's own calls out carry no user token: authn checks this workload's callers.
        if Direction::of(connection.direction) == Direction::Outbound {
            return action;
        }
        let verdict = self.authn.decide(&request_headers);
        stage::set_identity_headers(&verdict);
        for (name, value) in &verdict.set_headers {
            self.annotations.set(name, value.clone());
        }
        let request_id = request_headers
            .text(headers::REQUEST_ID)
            .unwrap_or_default();
        let Some(denial) = &verdict.denial else {
            if self.authn.awaiting_authority() {
                // Paused until the session authority answers (or the call times out).
                self.request_id = request_id;
                return Action::Pause;
            }
            return action;
        };
        self.annotations
            .set(headers::DENIAL, denial.reason().to_string());
        self.authn_replied = true;
        stage::send_denial(denial, &request_id, &verdict.allowed_methods)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.authn_replied {
            return Action::Pause;
        }
        self.transport
            .on_http_request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        if self.authn_replied {
            return Action::Pause;
        }
        self.transport.on_http_request_trailers(num_trailers)
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let action = self
            .transport
            .on_http_response_headers(num_headers, end_of_stream);
        self.audit
            .on_http_response_headers(num_headers, end_of_stream);
        action
    }

    // An inference route's body is hashed once: by transport when it signs it (its digest and
    // key id go to the record at `on_log`), else by audit.
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let signing = self.transport.hashing_response();
        let action = self
            .transport
            .on_http_response_body(body_size, end_of_stream);
        if !signing {
            self.audit.on_http_response_body(body_size, end_of_stream);
        }
        action
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        let signing = self.transport.hashing_response();
        let action = self.transport.on_http_response_trailers(num_trailers);
        if !signing {
            self.audit.on_http_response_trailers(num_trailers);
        }
        action
    }

    fn on_log(&mut self) {
        if let Some(body) = self.transport.take_signed_response() {
            self.audit.answered_with(body);
        }
        // A refusal after the request headers (a body whose signature failed) is transport's.
        if let Some(code) = self.transport.denied() {
            self.annotations.set(headers::DENIAL, code.to_string());
        }
        self.audit.log(Some(&self.annotations));
    }
}
