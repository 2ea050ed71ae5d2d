//! The audit stage and the HTTP context of its single-filter root `hipaa-audit`: gather the
//! request facts first (before any other filter or stage), refuse PHI requests
//! while the buffer is full under failClosed, read the outcome, and enqueue the record at
//! `on_log` — which Envoy calls for every stream, aborted ones included.
//!
//! The audit filter runs first, so it also removes every `x-hipaa-*` header the client sent (as
//! authn does; defence in depth): anything of that prefix present later was set by a hipaa filter
//! and may be trusted for the record. A spoofing attempt is counted.
//!
//! The combined root (`hipaa-mesh`) drives the same [`AuditHttp`] through
//! [`AuditHttp::request_headers`] (the header map and connection facts it read once) and
//! [`AuditHttp::log`] with the other stages' annotations held in memory ([`Annotations`])
//! instead of read back from request headers.
//!
//! When this filter's request callback never ran (a filter in front answered: Envoy's
//! `jwt_authn` for Istio's `RequestAuthentication`), the facts are gathered at `on_log` from the
//! `request.headers` attribute, and no `x-hipaa-*` request header is believed: none of the
//! mesh's stages ran, so any such header is the client's.

use crate::host;
use crate::root::Shared;
use hipaa_core::audit::buffer::{self, Admission};
use hipaa_core::audit::build::{
    self, BodyDigest, ConnectionFacts, RequestFacts, ResponseBody, ResponseFacts,
};
use hipaa_core::audit::response;
use hipaa_core::denial::Denial;
use hipaa_core::headers;
use hipaa_host::Headers;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

const REQ: MapType = MapType::HttpRequestHeaders;
const RESP: MapType = MapType::HttpResponseHeaders;

pub struct AuditHttp {
    shared: Rc<Shared>,
    request: Option<RequestFacts>,
    response: ResponseFacts,
    response_seen: bool,
    /// `x-hipaa-denial` on the reply's headers, read with the status as they went by.
    response_denial: Option<String>,
    /// This filter refused the request (full buffer): counted, not recorded.
    refused: bool,
    /// Transport signs this route's responses (its `x-hipaa-signature` is the mesh's).
    route_signs: bool,
    /// An inference route: the response body is hashed as it passes (never kept), for the
    /// record's `inference.responseSha256`.
    digest: Option<BodyDigest>,
}

impl AuditHttp {
    pub fn new(shared: Rc<Shared>) -> AuditHttp {
        AuditHttp {
            shared,
            request: None,
            response: ResponseFacts::default(),
            response_seen: false,
            response_denial: None,
            refused: false,
            route_signs: false,
            digest: None,
        }
    }

    /// The end of the response body went by: what the caller received, hashed.
    fn finish_digest(&mut self) {
        if let Some(digest) = self.digest.take() {
            self.response.body = Some(digest.finish(None));
        }
    }

    /// The combined filter's transport stage signed the body and hashed it on the way: its
    /// digest and key id stand in for this stage's own (the body is hashed once).
    pub fn answered_with(&mut self, body: ResponseBody) {
        self.digest = None;
        self.response.body = Some(body);
    }

    /// Reads the annotations the other filters set, once, at log time. Envoy refuses a header
    /// map outside its own callback (and the SDK panics on that refusal), so the request
    /// headers are read through the `request.headers` attribute, which stays readable at log
    /// time: the whole map in one host call (the values looked up in it), or, should the host
    /// not hand the map over, one attribute per name. In the combined filter (`annotations`
    /// given) nothing is read back: the stages handed their facts on in memory. The reply's
    /// `x-hipaa-denial` was read from the reply's own header map as it went by; when no reply
    /// went through this filter, from the `response.headers` attribute. Either way only a
    /// local reply's is believed (`hipaa_core::audit::response`).
    fn read_outcome(&mut self, annotations: Option<&Annotations>) {
        let response_seen = self.response_seen;
        let response_denial = self.response_denial.take();
        let details = self.response.code_details.clone();
        let response = |n: &str| {
            let denial = if response_seen {
                response_denial.clone()
            } else {
                host::string_property(&["response", "headers", n])
            };
            response::trusted_denial(denial, details.as_deref())
        };
        if let Some(annotations) = annotations {
            return self
                .response
                .read_annotations(|n| annotations.get(n), response);
        }
        match host::map_property(&["request", "headers"]) {
            Some(pairs) => self
                .response
                .read_annotations(|n| host::lookup(&pairs, n), response),
            None => self.response.read_annotations(
                |n| host::string_property(&["request", "headers", n]),
                response,
            ),
        }
    }
}

/// What the stages of the combined filter found, handed to the audit stage in memory: the
/// identity authn verified, transport's connection facts, the refusing stage's reason.
#[derive(Debug, Default, Clone)]
pub struct Annotations {
    values: Vec<(&'static str, String)>,
}

impl Annotations {
    /// Adds `value` under `name` (an `x-hipaa-*` name of the header contract); the first wins.
    pub fn set(&mut self, name: &'static str, value: String) {
        if self.get(name).is_none() {
            self.values.push((name, value));
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The HTTP context of a root context without a valid policy or MAC key (Envoy asked for one
/// anyway): every request is refused with `filter_unconfigured` (503) rather than passed
/// unaudited; there is no chain to record it in, so it is counted.
pub struct UnconfiguredHttp;

impl Context for UnconfiguredHttp {}

impl HttpContext for UnconfiguredHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        host::count(host::UNCONFIGURED_503);
        let pairs = host::header_pairs(REQ);
        for name in pairs.names().filter(|n| headers::is_reserved(n)) {
            host::remove_header(REQ, name);
        }
        let request_id = host::lookup(&pairs, headers::REQUEST_ID).unwrap_or_default();
        if !hipaa_host::send_reply(&Denial::Unconfigured.reply(&request_id, &[])) {
            log::error!("hipaa-audit: could not send the 503 reply");
        }
        Action::Pause
    }
}

/// The connection attributes the record reads (one host call each).
pub fn connection_facts() -> ConnectionFacts {
    ConnectionFacts {
        source_address: host::string_property(&["source", "address"]),
        tls_version: host::string_property(&["connection", "tls_version"]),
        peer_uri_san: host::string_property(&["connection", "uri_san_peer_certificate"]),
    }
}

impl Context for AuditHttp {}

impl HttpContext for AuditHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // One host call for the whole map; the facts are looked up in it.
        let pairs = host::header_pairs(REQ);
        let direction = host::int_property(&["xds", "listener_direction"]);
        self.request_headers(&pairs, &connection_facts(), direction)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.refused {
            return Action::Continue;
        }
        // Last on the response path: an upstream's `x-hipaa-*` headers go here, on every
        // listener, and only a local reply's denial is believed.
        let details = host::string_property(&["response", "code_details"]);
        // One host call for the map; the status and the denial are looked up in it (the
        // denial as read before the removal below: it is removed only from an answer that is
        // not a local reply, and only a local reply's is believed).
        let pairs = host::header_pairs(RESP);
        let names: Vec<String> = pairs.names().map(str::to_string).collect();
        for name in response::headers_to_remove(&names, details.as_deref(), self.route_signs) {
            host::remove_header(RESP, &name);
        }
        if self.request.is_none() {
            return Action::Continue;
        }
        self.response_seen = true;
        self.response.status = host::lookup(&pairs, ":status")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        self.response_denial =
            response::trusted_denial(host::lookup(&pairs, headers::DENIAL), details.as_deref());
        if end_of_stream {
            self.finish_digest();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Not paused, so each call hands over the next chunk only.
        if let Some(digest) = self.digest.as_mut() {
            if body_size > 0 {
                digest.update(&hipaa_host::buffer(BufferType::HttpResponseBody, body_size));
            }
            if end_of_stream {
                self.finish_digest();
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.finish_digest();
        Action::Continue
    }

    fn on_log(&mut self) {
        self.log(None);
    }
}

impl AuditHttp {
    /// The request-headers step on the header map as the client sent it and the connection's
    /// facts: gathers the record's request facts, removes (and counts) the client's `x-hipaa-*`
    /// headers, and refuses a PHI request with 503 while the buffer is full under failClosed.
    pub fn request_headers(
        &mut self,
        pairs: &Headers,
        conn: &ConnectionFacts,
        direction: Option<i64>,
    ) -> Action {
        let facts = self.gather(pairs, conn, direction, host::now_millis());
        if !facts.spoofed.is_empty() {
            host::count(host::SPOOFED);
            for name in &facts.spoofed {
                host::remove_header(REQ, name);
            }
        }
        let audit = &self.shared.audit;
        let admission = buffer::admit(
            facts.class(),
            self.shared.buffered(),
            u64::from(audit.max_buffered),
            audit.when_collector_down,
        );
        match admission {
            Admission::Pass => {}
            Admission::PassUnaudited => host::count(host::BUFFER_FULL_PASS),
            Admission::Refuse => {
                host::count(host::BUFFER_FULL_503);
                self.refused = true;
                let reply = buffer::refusal(facts.request_id.as_deref().unwrap_or_default());
                if !hipaa_host::send_reply(&reply) {
                    log::error!("hipaa-audit: could not send the 503 reply");
                }
                return Action::Pause;
            }
        }
        if facts.inference_route {
            self.digest = Some(BodyDigest::default());
        }
        self.request = Some(facts);
        Action::Continue
    }

    fn gather(
        &mut self,
        pairs: &Headers,
        conn: &ConnectionFacts,
        direction: Option<i64>,
        start_ms: i64,
    ) -> RequestFacts {
        let names: Vec<String> = pairs.names().map(str::to_string).collect();
        let mut facts = RequestFacts::gather(
            &self.shared.policy.routes,
            &names,
            |n| host::lookup(pairs, n),
            conn,
            start_ms,
        );
        facts.egress = build::egress_facts(
            &self.shared.policy.spec.egress,
            direction,
            host::lookup(pairs, ":authority").as_deref(),
        );
        self.route_signs =
            response::route_signs(&self.shared.policy.routes, &facts.method, &facts.path);
        facts
    }

    /// A filter in front answered before this one saw the request: the facts from the
    /// `request.headers` attribute at log time, and no `x-hipaa-*` request header believed.
    fn gather_late(&mut self) -> Option<RequestFacts> {
        let pairs = host::map_property(&["request", "headers"])?;
        let start_ms = host::int_property(&["request", "time"])
            .map(|nanos| nanos / 1_000_000)
            .unwrap_or_else(host::now_millis);
        let direction = host::int_property(&["xds", "listener_direction"]);
        let facts = self.gather(&pairs, &connection_facts(), direction, start_ms);
        if !facts.spoofed.is_empty() {
            host::count(host::SPOOFED);
        }
        Some(facts)
    }

    /// Seals and enqueues the record at the end of the stream. `annotations`: what the
    /// combined filter's stages found (None: read the other filters' request headers).
    pub fn log(&mut self, annotations: Option<&Annotations>) {
        if self.refused {
            return;
        }
        let none_believed = Annotations::default();
        let (request, annotations) = match self.request.take() {
            Some(request) => (request, annotations),
            None => match self.gather_late() {
                Some(request) => (request, Some(&none_believed)),
                None => return,
            },
        };
        // Everything the other filters set is in place by now (also when no response headers
        // went through: the client left first, or Envoy answered itself).
        self.response.code_details = host::string_property(&["response", "code_details"]);
        self.read_outcome(annotations);
        if !self.response_seen {
            // No response headers went through this filter: the client left first (status 0),
            // unless Envoy itself answered.
            self.response.status = host::int_property(&["response", "code"])
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0);
        }
        if !build::should_record(request.class(), self.response.denied(), false) {
            return;
        }
        self.response.bytes = host::int_property(&["response", "size"])
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        self.response.end_ms = host::now_millis();
        let record = build::build_record(&request, &self.response);
        // Count first (near maxBuffered the compare-and-swap reads the shared count too); past
        // the hard limit, the count is taken back and the record dropped.
        let max = u64::from(self.shared.audit.max_buffered);
        let count = self.shared.add_buffered(1);
        if !buffer::may_enqueue(count.saturating_sub(1), max) {
            self.shared.add_buffered(-1);
            log::error!("hipaa-audit: buffer past its hard limit; an audit record was dropped");
            host::count(host::DROPPED);
            return;
        }
        // Sealed here, in this VM's chain, and queued for the root context (same VM, same
        // thread: seqs follow the order of the calls).
        match self.shared.seal_and_enqueue(record) {
            Ok(()) => host::count(host::ENQUEUED),
            Err(e) => {
                // Cannot happen for an access record; never silently.
                self.shared.add_buffered(-1);
                log::error!("hipaa-audit: a record could not be sealed: {e}");
                host::count(host::DROPPED);
            }
        }
    }
}
