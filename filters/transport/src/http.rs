//! The transport stage and the HTTP context of its single-filter root `hipaa-transport`:
//! gather the connection and request facts, ask core, apply the answer. The combined root
//! (`hipaa-mesh`) drives the same [`TransportHttp`] through [`TransportHttp::request_headers`]
//! with the header map and connection facts it already read, and the body and response
//! callbacks as they are; it keeps the annotations in memory instead of request headers.
//!
//! Request path: remove every incoming `x-hipaa-*` header (keeping the value of
//! `x-hipaa-signature` for verification), decide, set the annotation headers for the audit
//! filter (single-filter root only), then continue or refuse with a local reply. On `verifyRequests` writes the body is
//! held (bounded by `maxBodyBytes`) until its signature is checked.
//!
//! Response path, on routes that sign: the body is hashed as it streams and its Ed25519
//! signature (the response key) is appended as the `x-hipaa-signature` trailer (a header when
//! there is no body).
//!
//! Two facts about Envoy's Proxy-Wasm host shape this file:
//! - Pausing in a headers callback stops the body callbacks as well (the host turns
//!   StopIteration into StopAllIterationAndWatermark), so a filter cannot read a body before
//!   its headers go on. Request headers therefore continue while the body is held; a refused
//!   body means the upstream saw headers and then a reset, never the body.
//! - A header map can only be written in its own headers callback (trailers: at the end of the
//!   stream); any other write fails, and the SDK panics on that failure. Every write here is
//!   made only where the host allows it.
//!
//! Envoy calls the response callbacks for a local reply this filter sent; after a reply every
//! callback continues untouched (sending a second reply would hang the stream).

use crate::host;
use crate::root::Config;
use hipaa_core::audit::build::ResponseBody;
use hipaa_core::integrity::{MacKeyRing, ResponseSigner, ResponseSigningKey, SIGNATURE_HEADER};
use hipaa_core::transport::{
    self, BodyPlan, ConnectionFacts, Denial, Direction, RequestLine, Verdict, HEADER_DENIAL,
    HEADER_PREFIX,
};
use hipaa_host::Headers;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

const REQ: MapType = MapType::HttpRequestHeaders;
const RESP: MapType = MapType::HttpResponseHeaders;
const RESP_TRAILERS: MapType = MapType::HttpResponseTrailers;

pub struct TransportHttp {
    config: Option<Rc<Config>>,
    request_id: String,
    plan: BodyPlan,
    /// The client's `x-hipaa-signature`, read before the reserved headers were removed.
    request_signature: Option<String>,
    /// Holding the request body until its signature is checked.
    verifying: bool,
    request_body_size: usize,
    /// Signing the response body as it passes.
    signer: Option<ResponseSigner>,
    /// The body that was signed, to its end (its SHA-256 and key id, for the audit record).
    signed: Option<ResponseBody>,
    /// A local reply was sent; nothing more to do.
    replied: bool,
    /// Hand the annotations and the denial on as request headers (the single-filter chain);
    /// false in the combined filter, which keeps them in memory.
    annotate: bool,
    /// The code of this stage's refusal, if it refused.
    denied: Option<&'static str>,
    /// What the decision said about the connection (`x-hipaa-tls`, `x-hipaa-peer`, ...).
    annotations: Vec<(&'static str, String)>,
}

/// Where a refusal happens: only in the request headers callback may the request map be
/// written (the audit filter reads `x-hipaa-denial` there).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    RequestHeaders,
    Later,
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
            signer: None,
            signed: None,
            replied: false,
            annotate: true,
            denied: None,
            annotations: Vec::new(),
        }
    }

    /// The stage inside the combined filter: nothing handed on as request headers.
    pub fn in_memory(config: Option<Rc<Config>>) -> TransportHttp {
        TransportHttp {
            annotate: false,
            ..TransportHttp::new(config)
        }
    }

    /// The code of this stage's refusal, if it refused (request or body phase).
    pub fn denied(&self) -> Option<&'static str> {
        self.denied
    }

    /// Whether this stage is hashing the response body as it passes (it signs it).
    pub fn hashing_response(&self) -> bool {
        self.signer.is_some()
    }

    /// The response body this stage signed, once its end went by (for the audit record).
    pub fn take_signed_response(&mut self) -> Option<ResponseBody> {
        self.signed.take()
    }

    /// The decision's annotations about the connection (for the audit record).
    pub fn annotations(&self) -> &[(&'static str, String)] {
        &self.annotations
    }

    fn request_keys(&self) -> Option<&MacKeyRing> {
        self.config.as_deref().and_then(|c| c.request_keys.as_ref())
    }

    fn response_key(&self) -> Option<&ResponseSigningKey> {
        self.config.as_deref().and_then(|c| c.response_key.as_ref())
    }

    /// Refuse: mark the request for the audit filter, count, and send the contract's reply
    /// (core's, the same shape as authn's). The reply itself also carries `x-hipaa-denial`, for
    /// refusals made after the request headers have gone on.
    fn deny(&mut self, denial: &Denial, phase: Phase) -> Action {
        if phase == Phase::RequestHeaders && self.annotate {
            host::set_header(REQ, HEADER_DENIAL, denial.code());
        }
        self.denied = Some(denial.code());
        hipaa_host::count_reason(host::DENY, denial.code());
        if !hipaa_host::send_reply(&denial.reply(&self.request_id)) {
            host::log_error("hipaa-transport: could not send the local reply");
        }
        self.replied = true;
        self.verifying = false;
        self.signer = None;
        Action::Pause
    }

    fn strip_reserved_headers(request_headers: &Headers) {
        for name in request_headers.names() {
            if name
                .get(..HEADER_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(HEADER_PREFIX))
            {
                host::remove_header(REQ, name);
            }
        }
    }

    /// The connection attributes the transport decision reads (one host call each).
    pub fn connection_facts() -> ConnectionFacts {
        ConnectionFacts {
            tls_version: host::string_property(&["connection", "tls_version"]),
            mtls: host::bool_property(&["connection", "mtls"]),
            peer_uri_san: host::string_property(&["connection", "uri_san_peer_certificate"]),
            direction: host::int_property(&["xds", "listener_direction"]),
        }
    }

    fn verify_request(&mut self, body: &[u8], phase: Phase) -> Action {
        self.verifying = false;
        match transport::verify_request_body(
            self.request_keys(),
            self.request_signature.as_deref(),
            body,
        ) {
            Ok(()) => {
                host::count(host::VERIFIED);
                Action::Continue
            }
            Err(denial) => self.deny(&denial, phase),
        }
    }

    /// The request-headers step on a header map read before the `x-hipaa-*` headers were
    /// removed (the client's signature is one of them) and the connection's facts.
    pub fn request_headers(
        &mut self,
        request_headers: &Headers,
        facts: &ConnectionFacts,
        end_of_stream: bool,
    ) -> Action {
        self.request_id = request_headers.text("x-request-id").unwrap_or_default();
        self.request_signature = request_headers.text(SIGNATURE_HEADER);
        let Some(config) = self.config.clone() else {
            return self.deny(&Denial::Unconfigured, Phase::RequestHeaders);
        };
        let method = request_headers.text(":method").unwrap_or_default();
        let path = request_headers.text(":path").unwrap_or_default();
        let authority = request_headers
            .text(":authority")
            .or_else(|| request_headers.text("host"));
        let request = RequestLine {
            method: &method,
            path: &path,
            authority: authority.as_deref(),
        };
        let decision = transport::decide(facts, &request, &config.policy, host::now_secs());
        if self.annotate {
            for (name, value) in &decision.annotations {
                host::set_header(REQ, name, value);
            }
        }
        self.annotations = decision.annotations;
        let allowance = match decision.verdict {
            Verdict::Deny(denial) => return self.deny(&denial, Phase::RequestHeaders),
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
            return self.verify_request(b"", Phase::RequestHeaders);
        }
        let content_length = request_headers
            .text("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if content_length.is_some_and(|n| self.plan.too_large(n)) {
            return self.deny(&Denial::RequestBodyTooLarge, Phase::RequestHeaders);
        }
        self.verifying = true;
        Action::Continue
    }

    /// The end of a signed response: the signature as a trailer.
    fn finish_signing(&mut self) {
        if let Some(signer) = self.signer.take() {
            let (signature, body) = signer.finish_with_body();
            host::set_header(RESP_TRAILERS, SIGNATURE_HEADER, &signature);
            host::count(host::SIGNED);
            self.signed = Some(body);
        }
    }
}

impl Context for TransportHttp {}

impl HttpContext for TransportHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let request_headers = Headers::read(REQ);
        Self::strip_reserved_headers(&request_headers);
        self.request_headers(&request_headers, &Self::connection_facts(), end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if !self.verifying {
            return Action::Continue;
        }
        // While paused, Envoy hands over the whole buffered body each time.
        self.request_body_size = body_size;
        if self.plan.too_large(body_size as u64) {
            return self.deny(&Denial::RequestBodyTooLarge, Phase::Later);
        }
        if !end_of_stream {
            // Pause in a body callback buffers (StopIterationAndBuffer).
            return Action::Pause;
        }
        let body = host::buffer(BufferType::HttpRequestBody, body_size);
        self.verify_request(&body, Phase::Later)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if self.verifying {
            let body = host::buffer(BufferType::HttpRequestBody, self.request_body_size);
            return self.verify_request(&body, Phase::Later);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied || !self.plan.sign_response {
            return Action::Continue;
        }
        let signer = match transport::response_signer(self.response_key()) {
            Ok(s) => s,
            Err(denial) => return self.deny(&denial, Phase::Later),
        };
        // An upstream's own signature is never passed off as the mesh's.
        host::remove_header(RESP, SIGNATURE_HEADER);
        if end_of_stream {
            let (signature, body) = signer.finish_with_body();
            host::set_header(RESP, SIGNATURE_HEADER, &signature);
            host::count(host::SIGNED);
            self.signed = Some(body);
            return Action::Continue;
        }
        // The signature follows the body as a trailer. Without a length, HTTP/1.1 goes
        // chunked, the framing that can carry trailers (with Envoy's `enable_trailers`).
        host::remove_header(RESP, "content-length");
        self.signer = Some(signer);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(signer) = self.signer.as_mut() else {
            return Action::Continue;
        };
        if body_size > 0 {
            signer.update(&host::buffer(BufferType::HttpResponseBody, body_size));
        }
        if end_of_stream {
            self.finish_signing();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.finish_signing();
        Action::Continue
    }
}
