//! HTTP context: gather the connection and request facts, ask core, apply the answer.
//!
//! Request path: remove every incoming `x-hipaa-*` header (keeping the value of
//! `x-hipaa-signature` for verification), decide, set the annotation headers for the audit
//! filter, then continue, refuse with a local reply, or hold the request until its body is
//! verified. Response path, on routes that sign: hold the response headers, buffer the body
//! (bounded), and add `x-hipaa-signature` at the end of the stream, before the headers go out.
//!
//! Envoy calls the response callbacks for a local reply this filter sent; after a reply every
//! callback continues untouched (sending a second reply would hang the stream).

use crate::host;
use crate::root::Config;
use hipaa_core::integrity::SIGNATURE_HEADER;
use hipaa_core::transport::{
    self, BodyPlan, ConnectionFacts, Denial, Direction, RequestLine, Verdict, HEADER_DENIAL,
    HEADER_PREFIX,
};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

const REQ: MapType = MapType::HttpRequestHeaders;
const RESP: MapType = MapType::HttpResponseHeaders;

pub struct TransportHttp {
    config: Option<Rc<Config>>,
    request_id: String,
    plan: BodyPlan,
    /// The client's `x-hipaa-signature`, read before the reserved headers were removed.
    request_signature: Option<String>,
    /// Waiting for the whole request body to verify it.
    verifying: bool,
    request_body_size: usize,
    /// Response headers held until the body is signed.
    signing: bool,
    response_body_size: usize,
    /// A local reply was sent; nothing more to do.
    replied: bool,
}

impl TransportHttp {
    pub fn new(config: Option<Rc<Config>>) -> TransportHttp {
        TransportHttp {
            config,
            request_id: String::new(),
            plan: BodyPlan::default(),
            request_signature: None,
            verifying: false,
            request_body_size: 0,
            signing: false,
            response_body_size: 0,
            replied: false,
        }
    }

    fn keys(&self) -> Option<&hipaa_core::integrity::MacKeyRing> {
        self.config.as_deref().and_then(|c| c.keys.as_ref())
    }

    /// Refuse: mark the request for the audit filter, count, and send the contract's reply.
    fn deny(&mut self, denial: &Denial) -> Action {
        host::set_header(REQ, HEADER_DENIAL, denial.code());
        host::count(&host::denial_counter(denial.code()));
        host::send_reply(denial.status(), &denial.body(&self.request_id));
        self.replied = true;
        self.verifying = false;
        self.signing = false;
        Action::Pause
    }

    fn strip_reserved_headers(&self) {
        for name in host::header_names(REQ) {
            if name
                .get(..HEADER_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(HEADER_PREFIX))
            {
                host::remove_header(REQ, &name);
            }
        }
    }

    fn connection_facts() -> ConnectionFacts {
        ConnectionFacts {
            tls_version: host::string_property(&["connection", "tls_version"]),
            mtls: host::bool_property(&["connection", "mtls"]),
            peer_uri_san: host::string_property(&["connection", "uri_san_peer_certificate"]),
            direction: host::int_property(&["xds", "listener_direction"]),
        }
    }

    fn verify_request(&mut self) -> Action {
        self.verifying = false;
        let body = host::buffer(BufferType::HttpRequestBody, self.request_body_size);
        match transport::verify_request_body(self.keys(), self.request_signature.as_deref(), &body)
        {
            Ok(()) => {
                host::count(host::VERIFIED);
                Action::Continue
            }
            Err(denial) => self.deny(&denial),
        }
    }

    fn sign_response(&mut self) -> Action {
        self.signing = false;
        let body = host::buffer(BufferType::HttpResponseBody, self.response_body_size);
        match transport::sign_response_body(self.keys(), &body) {
            Ok(signature) => {
                host::set_header(RESP, SIGNATURE_HEADER, &signature);
                host::count(host::SIGNED);
                Action::Continue
            }
            Err(denial) => self.deny(&denial),
        }
    }
}

fn content_length(map: MapType) -> Option<u64> {
    host::header(map, "content-length").and_then(|v| v.trim().parse().ok())
}

impl Context for TransportHttp {}

impl HttpContext for TransportHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.request_id = host::header(REQ, "x-request-id").unwrap_or_default();
        self.request_signature = host::header(REQ, SIGNATURE_HEADER);
        self.strip_reserved_headers();
        let Some(config) = self.config.clone() else {
            return self.deny(&Denial::Unconfigured);
        };
        let facts = Self::connection_facts();
        let method = host::header(REQ, ":method").unwrap_or_default();
        let path = host::header(REQ, ":path").unwrap_or_default();
        let authority = host::header(REQ, ":authority").or_else(|| host::header(REQ, "host"));
        let request = RequestLine {
            method: &method,
            path: &path,
            authority: authority.as_deref(),
        };
        let decision = transport::decide(&facts, &request, &config.policy, host::now_secs());
        for (name, value) in &decision.annotations {
            host::set_header(REQ, name, value);
        }
        let allowance = match decision.verdict {
            Verdict::Deny(denial) => return self.deny(&denial),
            Verdict::Allow(a) => a,
        };
        host::count(match allowance.direction {
            Direction::Inbound => host::ALLOW_INBOUND,
            Direction::Outbound => host::ALLOW_EGRESS,
        });
        self.plan = allowance.body;
        if !self.plan.verify_request {
            return Action::Continue;
        }
        if end_of_stream {
            return self.verify_request();
        }
        if content_length(REQ).is_some_and(|n| self.plan.too_large(n)) {
            return self.deny(&Denial::RequestBodyTooLarge);
        }
        // Hold the headers too: the upstream sees nothing of a request until it is verified.
        self.verifying = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if !self.verifying {
            return Action::Continue;
        }
        self.request_body_size = body_size;
        if self.plan.too_large(body_size as u64) {
            return self.deny(&Denial::RequestBodyTooLarge);
        }
        if !end_of_stream {
            // Pause in a body callback buffers (StopIterationAndBuffer in Envoy).
            return Action::Pause;
        }
        self.verify_request()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if self.verifying {
            return self.verify_request();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied || !self.plan.sign_response {
            return Action::Continue;
        }
        if end_of_stream {
            return self.sign_response();
        }
        if content_length(RESP).is_some_and(|n| self.plan.too_large(n)) {
            return self.deny(&Denial::ResponseBodyTooLarge);
        }
        self.signing = true;
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied || !self.signing {
            return Action::Continue;
        }
        self.response_body_size = body_size;
        if self.plan.too_large(body_size as u64) {
            return self.deny(&Denial::ResponseBodyTooLarge);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.sign_response()
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.signing {
            return self.sign_response();
        }
        Action::Continue
    }
}
