//! Which requests the audit filter records, and the v1 `access` record built from plain facts.
//!
//! The filter gathers facts in two steps and this module turns them into a record:
//! * at request time ([`RequestFacts::gather`]): method, path, the matched route, the patient
//!   (the route's `patientFrom`), the model and version (the route's `inference` headers), user
//!   agent, source address, TLS version, peer, request id — before any other filter runs;
//! * at response / log time ([`ResponseFacts`]): the `x-hipaa-*` request headers the other
//!   filters set (subject, roles, session, amr, break-glass, denial), the status sent (0 when the
//!   client left first), bytes and duration, and on an inference route the SHA-256 of the
//!   response body the caller received ([`BodyDigest`], streamed; [`ResponseBody`]).
//!
//! # What is recorded ([`should_record`])
//!
//! Every request on a PHI route or an unmatched route (allowed or denied), and every request a
//! hipaa filter refused anywhere (its `x-hipaa-denial` code is set). An allowed request on a
//! public route, or on a protected (non-PHI, non-public) route, produces none. The audit filter's
//! own 503 for a full buffer is counted, not recorded (DESIGN.md).
//!
//! # Operation ([`operation`])
//!
//! `inference` on a route with `inference`; otherwise `export` for a FHIR bulk-data export (a
//! path segment `$export`, FHIR Bulk Data Access IG, also when percent-encoded as `%24export`);
//! otherwise by method: GET / HEAD / OPTIONS / TRACE `read`, DELETE `delete`, and every other
//! method (PUT, POST, PATCH and anything unknown) `write` — an unknown method is assumed to change
//! data rather than to only read it.

use crate::audit::record::{
    Action, Actor, AuditRecord, Decision, Egress, Emergency, Inference, Operation, Outcome,
    Resource, Source,
};
use crate::headers;
use crate::routes::{RouteClass, RouteTable};
use crate::transport::{baa_vendor, normalize_host, Direction, HEADER_PEER, HEADER_TLS};
use sha2::{Digest, Sha256};

/// What the request said, gathered before any other filter ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub method: String,
    /// The path as received (with its query string).
    pub path: String,
    /// The matched route's name; None on an unmatched route.
    pub route: Option<String>,
    pub class: Option<RouteClass>,
    pub inference_route: bool,
    pub patient: Option<String>,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
    /// The client address without its port.
    pub source_ip: Option<String>,
    /// `TLSv1.2` / `TLSv1.3` from the connection; None for plaintext.
    pub tls: Option<String>,
    /// The peer's SPIFFE id from the connection.
    pub peer: Option<String>,
    /// On an outbound listener: the host and the BAA covering it ([`egress_facts`]).
    pub egress: Option<Egress>,
    /// `x-hipaa-*` header names the client sent (a spoofing attempt; the filter removes them).
    pub spoofed: Vec<String>,
    /// Unix milliseconds when the request headers arrived.
    pub start_ms: i64,
}

/// The connection facts the host gives besides the headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// `source.address`, e.g. `10.1.2.3:51234` or `[::1]:51234`.
    pub source_address: Option<String>,
    pub tls_version: Option<String>,
    pub peer_uri_san: Option<String>,
}

impl RequestFacts {
    /// Gathers the request facts from the request headers (lowercase names) and the connection.
    /// `header` answers one header by lowercase name.
    pub fn gather(
        table: &RouteTable,
        header_names: &[String],
        header: impl Fn(&str) -> Option<String>,
        conn: &ConnectionFacts,
        start_ms: i64,
    ) -> RequestFacts {
        let method = header(":method").unwrap_or_default();
        let path = header(":path").unwrap_or_default();
        let found = table.find(&method, &path);
        let route = found.route();
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let patient = route
            .and_then(|r| r.patient.as_ref())
            // The same function as authn's decision (which refuses an ambiguous id with 400):
            // such a request is recorded with that denial and no patient.
            .and_then(|src| {
                crate::patient::resolve(src, &path, |name| header(&name.to_ascii_lowercase()))
                    .ok()
                    .flatten()
            });
        let inference = route.and_then(|r| r.inference.as_ref());
        let model = inference.and_then(|i| non_empty(header(&i.model_header.to_ascii_lowercase())));
        let model_version =
            inference.and_then(|i| non_empty(header(&i.version_header.to_ascii_lowercase())));
        let spoofed = header_names
            .iter()
            .filter(|n| headers::is_reserved(n))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        RequestFacts {
            route: route.map(|r| r.name.clone()),
            class: Some(found.class()),
            inference_route: inference.is_some(),
            patient,
            model,
            model_version,
            request_id: non_empty(header(headers::REQUEST_ID)),
            user_agent: non_empty(header("user-agent")),
            source_ip: conn.source_address.as_deref().and_then(source_ip),
            tls: conn.tls_version.clone().filter(|s| !s.is_empty()),
            peer: conn.peer_uri_san.clone().filter(|s| !s.is_empty()),
            egress: None,
            spoofed,
            start_ms,
            method,
            path,
        }
    }

    /// The route class; an unknown route (facts not gathered) counts as PHI, and so does every
    /// call out of the mesh (an outbound listener): what leaves may carry PHI, whatever its path.
    pub fn class(&self) -> RouteClass {
        if self.egress.is_some() {
            return RouteClass::Phi;
        }
        self.class.unwrap_or(RouteClass::Phi)
    }
}

/// The record's `egress` section: on an outbound listener (`xds.listener_direction`), the host
/// of `authority` and the BAA id of the listed vendor for that host (expired or not: the
/// outcome says whether the call was refused). None on every other listener.
pub fn egress_facts(
    policy: &crate::policy::Egress,
    direction: Option<i64>,
    authority: Option<&str>,
) -> Option<Egress> {
    if Direction::of(direction) != Direction::Outbound {
        return None;
    }
    let host = authority.and_then(normalize_host);
    let baa_id = host
        .as_deref()
        .and_then(|h| baa_vendor(policy, h))
        .map(|v| v.baa_id.clone());
    Some(Egress { host, baa_id })
}

/// `outcome.reason` when Envoy refused a request because a Wasm filter failed.
pub const FILTER_FAILED: &str = "filter_failed";
/// `outcome.reason` when Envoy's own `jwt_authn` refused the token before the hipaa filters
/// ran (Istio's `RequestAuthentication` with `verification: envoy`).
pub const JWT_AUTHN_DENIED: &str = "jwt_authn_denied";
/// The `response.code_details` prefix of a `jwt_authn` refusal.
const JWT_AUTHN_DETAILS: &str = "jwt_authn_access_denied";

/// What happened, read at response / log time. The `x-hipaa-*` values were set by hipaa
/// filters (the audit filter removed the client's own at request time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub subject: Option<String>,
    pub roles: Option<String>,
    pub session: Option<String>,
    pub amr: Option<String>,
    pub break_glass: Option<String>,
    /// `x-hipaa-denial`: from the request headers (authn, transport) or the reply's headers
    /// (a refusal after the request headers went on).
    pub denial: Option<String>,
    /// `x-hipaa-tls` / `x-hipaa-peer` from the transport filter, used when the connection
    /// attributes were not readable at request time.
    pub tls: Option<String>,
    pub peer: Option<String>,
    /// Envoy's `response.code_details`: `via_upstream` when the app answered, else why Envoy
    /// answered itself (e.g. `wasm_fail_stream` when a filter VM failed).
    pub code_details: Option<String>,
    /// The status sent; 0 when no response was sent (the client left first).
    pub status: u16,
    pub bytes: u64,
    pub end_ms: i64,
    /// The response body that went through to the end of the stream on an inference route
    /// (None: not an inference route, or the body never ended: the client left, a reset).
    pub body: Option<ResponseBody>,
}

/// A response body as the record states it: its SHA-256, its length, and the key id of the
/// signature the mesh sent with it (None when the stage that hashed it did not sign it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBody {
    pub sha256: [u8; 32],
    pub bytes: u64,
    pub signature_key_id: Option<String>,
}

/// SHA-256 over a body that arrives in chunks, without keeping it: constant memory whatever
/// the body's size (no buffer, so no buffer limit applies to what the record states).
#[derive(Clone, Default)]
pub struct BodyDigest {
    hash: Sha256,
    bytes: u64,
}

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDigest")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl BodyDigest {
    pub fn update(&mut self, chunk: &[u8]) {
        self.hash.update(chunk);
        let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.bytes = self.bytes.saturating_add(n);
    }

    /// The body as hashed so far, with the key id of its signature if the caller signs it.
    pub fn finish(self, signature_key_id: Option<String>) -> ResponseBody {
        ResponseBody {
            sha256: self.hash.finalize().into(),
            bytes: self.bytes,
            signature_key_id,
        }
    }
}

impl ResponseFacts {
    /// Reads the hipaa annotation headers with `header` (lowercase names); the first of
    /// `request` or `response` that carries `x-hipaa-denial` wins.
    pub fn read_annotations(
        &mut self,
        request: impl Fn(&str) -> Option<String>,
        response: impl Fn(&str) -> Option<String>,
    ) {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let keep = |slot: &mut Option<String>, v: Option<String>| {
            if let Some(v) = non_empty(v) {
                *slot = Some(v);
            }
        };
        keep(&mut self.subject, request(headers::SUBJECT));
        keep(&mut self.roles, request(headers::ROLES));
        keep(&mut self.session, request(headers::SESSION));
        keep(&mut self.amr, request(headers::AMR));
        keep(&mut self.break_glass, request(headers::BREAK_GLASS));
        keep(&mut self.tls, request(HEADER_TLS));
        keep(&mut self.peer, request(HEADER_PEER));
        if self.denial.is_none() {
            self.denial = non_empty(request(headers::DENIAL))
                .or_else(|| non_empty(response(headers::DENIAL)));
        }
    }

    /// A hipaa filter refused the request, or Envoy refused it because a filter failed.
    pub fn denied(&self) -> bool {
        self.reason().is_some()
    }

    /// The record's `outcome.reason`: the refusing hipaa filter's code; else `filter_failed`
    /// when Envoy answered because a Wasm filter failed (fail closed: a refusal of the mesh, not
    /// an answer of the app).
    pub fn reason(&self) -> Option<String> {
        self.denial.clone().or_else(|| {
            let details = self.code_details.as_deref()?;
            if details.starts_with("wasm_") {
                Some(FILTER_FAILED.to_string())
            } else if details.starts_with(JWT_AUTHN_DETAILS) {
                Some(JWT_AUTHN_DENIED.to_string())
            } else {
                None
            }
        })
    }
}

/// Whether a request produces an `access` record: every PHI or unmatched request, and every
/// request a hipaa filter refused; never the audit filter's own full-buffer 503.
pub fn should_record(class: RouteClass, denied: bool, refused_by_audit: bool) -> bool {
    if refused_by_audit {
        return false;
    }
    match class {
        RouteClass::Phi => true,
        RouteClass::Public | RouteClass::Protected => denied,
    }
}

/// The record's `action.operation` (see the module documentation).
pub fn operation(method: &str, path: &str, inference_route: bool) -> Operation {
    if inference_route {
        return Operation::Inference;
    }
    let (path_only, _) = crate::routes::split_query(path);
    let export = path_only
        .split('/')
        .any(|s| s == "$export" || s.eq_ignore_ascii_case("%24export"));
    if export {
        return Operation::Export;
    }
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" | "TRACE" => Operation::Read,
        "DELETE" => Operation::Delete,
        _ => Operation::Write,
    }
}

/// The FHIR resource type of a path: the segment after a `fhir` segment, when it looks like a
/// FHIR type name (an ASCII capital, then letters and digits): `/fhir/Patient/1` → `Patient`.
pub fn resource_type(path: &str) -> Option<String> {
    let (path_only, _) = crate::routes::split_query(path);
    let mut segments = path_only.split('/');
    segments.find(|s| s.eq_ignore_ascii_case("fhir"))?;
    let candidate = segments.next()?;
    let mut chars = candidate.chars();
    let first = chars.next()?;
    (first.is_ascii_uppercase() && chars.all(|c| c.is_ascii_alphanumeric()))
        .then(|| candidate.to_string())
}

/// The client address without its port: `10.1.2.3:5555` → `10.1.2.3`, `[::1]:5555` → `::1`;
/// a bare address is kept. None for an empty value.
pub fn source_ip(address: &str) -> Option<String> {
    let a = address.trim();
    if a.is_empty() {
        return None;
    }
    if let Some(rest) = a.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .filter(|s| !s.is_empty())
            .map(String::from);
    }
    match a.matches(':').count() {
        1 => a
            .split(':')
            .next()
            .filter(|s| !s.is_empty())
            .map(String::from),
        // A bare IPv6 address (or a bare IPv4 one): no port to remove.
        _ => Some(a.to_string()),
    }
}

fn split_list(value: Option<&String>) -> Option<Vec<String>> {
    let items: Vec<String> = value?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    (!items.is_empty()).then_some(items)
}

/// The unsealed v1 `access` record for one request (the chain is filled in when it is sealed).
pub fn build_record(req: &RequestFacts, resp: &ResponseFacts) -> AuditRecord {
    let mut record = AuditRecord::access(req.start_ms, req.request_id.clone());
    record.actor = Some(Actor {
        subject: resp.subject.clone(),
        roles: split_list(resp.roles.as_ref()),
        session: resp.session.clone(),
        amr: split_list(resp.amr.as_ref()),
        peer: req.peer.clone().or_else(|| resp.peer.clone()),
    });
    record.action = Some(Action {
        method: req.method.clone(),
        path: req.path.clone(),
        route: req.route.clone(),
        operation: operation(&req.method, &req.path, req.inference_route),
    });
    record.resource = Some(Resource {
        patient: req.patient.clone(),
        resource_type: resource_type(&req.path),
    });
    record.inference = (req.inference_route || req.model.is_some() || req.model_version.is_some())
        .then(|| {
            // What the model answered: only the body of an allowed request that reached its
            // end; an empty body, or a refusal's body, is no answer.
            let answer = resp.body.as_ref().filter(|b| b.bytes > 0 && !resp.denied());
            Inference {
                model: req.model.clone(),
                version: req.model_version.clone(),
                response_sha256: answer.map(|b| hex::encode(b.sha256)),
                response_signature_key_id: answer.and_then(|b| b.signature_key_id.clone()),
            }
        });
    record.egress = req.egress.clone();
    record.source = Some(Source {
        ip: req.source_ip.clone(),
        user_agent: req.user_agent.clone(),
        tls: req.tls.clone().or_else(|| resp.tls.clone()),
    });
    record.emergency = resp.break_glass.as_ref().map(|reason| Emergency {
        reason: reason.clone(),
    });
    let duration = resp.end_ms.saturating_sub(req.start_ms).max(0);
    record.outcome = Some(Outcome {
        decision: if resp.denied() {
            Decision::Deny
        } else {
            Decision::Allow
        },
        status: resp.status,
        reason: resp.reason(),
        bytes: resp.bytes,
        duration_ms: u64::try_from(duration).unwrap_or(0),
    });
    // Every client-controlled value bounded (after JSON escaping), cuts named in `truncated`.
    crate::audit::limits::cap_record(&mut record);
    record
}

/// A chain id from whatever unique material the VM has (time, context id, a shared counter, host
/// randomness): 32 lowercase hex characters of SHA-256 over it.
pub fn chain_id_from_seed(seed: &[u8]) -> String {
    let digest = Sha256::digest(seed);
    crate::audit::ChainWriter::chain_id_from_random(digest.get(..16).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> RouteTable {
        let routes: Vec<crate::policy::Route> = serde_json::from_value(json!([
            {"name": "health", "match": {"path": "/healthz"}, "public": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}},
            {"name": "risk", "match": {"pathPrefix": "/ai/risk"}, "phi": true,
             "patientFrom": {"header": "x-patient-id"},
             "inference": {"modelHeader": "x-model-name", "versionHeader": "x-model-version"}},
            {"name": "billing", "match": {"pathPrefix": "/billing/"}, "allowRoles": ["billing"]}
        ]))
        .unwrap();
        RouteTable::new(&routes, crate::policy::UnmatchedRoutes::Phi)
    }

    fn gather(headers: &[(&str, &str)], conn: &ConnectionFacts) -> RequestFacts {
        let t = table();
        let names: Vec<String> = headers.iter().map(|(k, _)| k.to_string()).collect();
        let lookup = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.to_string())
        };
        RequestFacts::gather(&t, &names, lookup, conn, 1_000)
    }

    #[test]
    fn request_facts_from_a_patient_read() {
        let conn = ConnectionFacts {
            source_address: Some("10.1.2.3:51234".into()),
            tls_version: Some("TLSv1.3".into()),
            peer_uri_san: Some("spiffe://cluster.local/ns/ehr/sa/web".into()),
        };
        let f = gather(
            &[
                (":method", "GET"),
                (":path", "/fhir/Patient/123?_format=json"),
                ("x-request-id", "rid-1"),
                ("user-agent", "curl/8"),
                ("x-hipaa-subject", "mallory"),
            ],
            &conn,
        );
        assert_eq!(f.route.as_deref(), Some("patient-record"));
        assert_eq!(f.class(), RouteClass::Phi);
        assert_eq!(f.patient.as_deref(), Some("123"));
        assert_eq!(f.request_id.as_deref(), Some("rid-1"));
        assert_eq!(f.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(f.source_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(f.tls.as_deref(), Some("TLSv1.3"));
        assert_eq!(f.spoofed, vec!["x-hipaa-subject".to_string()]);
        assert!(!f.inference_route);
        assert_eq!(f.model, None);
    }

    #[test]
    fn request_facts_from_an_inference_call_and_other_classes() {
        let f = gather(
            &[
                (":method", "POST"),
                (":path", "/ai/risk"),
                ("x-patient-id", "p9"),
                ("x-model-name", "sepsis-risk"),
                ("X-Model-Version", "4.2.0"),
            ],
            &ConnectionFacts::default(),
        );
        assert_eq!(f.route.as_deref(), Some("risk"));
        assert!(f.inference_route);
        assert_eq!(f.patient.as_deref(), Some("p9"));
        assert_eq!(f.model.as_deref(), Some("sepsis-risk"));
        assert_eq!(f.model_version.as_deref(), Some("4.2.0"));
        assert_eq!(f.source_ip, None);
        assert_eq!(f.tls, None);

        let f = gather(
            &[(":method", "GET"), (":path", "/healthz")],
            &ConnectionFacts::default(),
        );
        assert_eq!(f.class(), RouteClass::Public);
        let f = gather(
            &[(":method", "GET"), (":path", "/billing/1")],
            &ConnectionFacts::default(),
        );
        assert_eq!(f.class(), RouteClass::Protected);
        let f = gather(
            &[(":method", "GET"), (":path", "/else")],
            &ConnectionFacts::default(),
        );
        assert_eq!(f.class(), RouteClass::Phi);
        assert_eq!(f.route, None);
        assert_eq!(RequestFacts::default().class(), RouteClass::Phi);
    }

    #[test]
    fn what_is_recorded() {
        for denied in [false, true] {
            assert!(should_record(RouteClass::Phi, denied, false));
            assert!(!should_record(RouteClass::Phi, denied, true));
        }
        assert!(!should_record(RouteClass::Public, false, false));
        assert!(should_record(RouteClass::Public, true, false));
        assert!(!should_record(RouteClass::Protected, false, false));
        assert!(should_record(RouteClass::Protected, true, false));
        assert!(!should_record(RouteClass::Protected, true, true));
    }

    #[test]
    fn operations() {
        assert_eq!(operation("GET", "/fhir/Patient/1", false), Operation::Read);
        assert_eq!(operation("HEAD", "/x", false), Operation::Read);
        assert_eq!(operation("OPTIONS", "/x", false), Operation::Read);
        assert_eq!(operation("put", "/x", false), Operation::Write);
        assert_eq!(operation("POST", "/x", false), Operation::Write);
        assert_eq!(operation("PATCH", "/x", false), Operation::Write);
        assert_eq!(operation("BREW", "/x", false), Operation::Write);
        assert_eq!(operation("DELETE", "/x", false), Operation::Delete);
        assert_eq!(operation("GET", "/ai/risk", true), Operation::Inference);
        assert_eq!(
            operation("GET", "/fhir/Patient/$export", false),
            Operation::Export
        );
        assert_eq!(
            operation("GET", "/fhir/Group/7/%24EXPORT?_type=Patient", false),
            Operation::Export
        );
        assert_eq!(
            operation("GET", "/fhir/x?op=$export", false),
            Operation::Read
        );
        assert_eq!(
            operation("POST", "/fhir/$export-poll", false),
            Operation::Write
        );
    }

    #[test]
    fn resource_types() {
        assert_eq!(
            resource_type("/fhir/Patient/123").as_deref(),
            Some("Patient")
        );
        assert_eq!(
            resource_type("/api/FHIR/Observation?x=1").as_deref(),
            Some("Observation")
        );
        assert_eq!(resource_type("/fhir/patient/1"), None);
        assert_eq!(resource_type("/fhir/Pat-ient/1"), None);
        assert_eq!(resource_type("/fhir"), None);
        assert_eq!(resource_type("/fhir/"), None);
        assert_eq!(resource_type("/ai/risk"), None);
    }

    #[test]
    fn source_ips_lose_their_port() {
        assert_eq!(source_ip("10.1.2.3:5555").as_deref(), Some("10.1.2.3"));
        assert_eq!(source_ip("[::1]:5555").as_deref(), Some("::1"));
        assert_eq!(source_ip("[fe80::1]").as_deref(), Some("fe80::1"));
        assert_eq!(source_ip("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(source_ip("fe80::1").as_deref(), Some("fe80::1"));
        assert_eq!(source_ip(" "), None);
        assert_eq!(source_ip("[]:1"), None);
        assert_eq!(source_ip(":80"), None);
    }

    fn annotations(pairs: &[(&str, &str)], response: &[(&str, &str)]) -> ResponseFacts {
        let find = |list: &[(&str, &str)], n: &str| {
            list.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let mut r = ResponseFacts::default();
        r.read_annotations(|n| find(pairs, n), |n| find(response, n));
        r
    }

    #[test]
    fn annotations_are_read_and_denials_found_in_either_map() {
        let r = annotations(
            &[
                ("x-hipaa-subject", "alice"),
                ("x-hipaa-roles", "clinician, nurse"),
                ("x-hipaa-session", "sid-a"),
                ("x-hipaa-amr", "pwd,otp"),
                ("x-hipaa-break-glass", "patient-emergency"),
                ("x-hipaa-tls", "TLSv1.2"),
                ("x-hipaa-peer", "spiffe://x"),
            ],
            &[],
        );
        assert_eq!(r.subject.as_deref(), Some("alice"));
        assert_eq!(r.break_glass.as_deref(), Some("patient-emergency"));
        assert!(!r.denied());
        let r = annotations(
            &[("x-hipaa-denial", "role_not_allowed")],
            &[("x-hipaa-denial", "other")],
        );
        assert_eq!(r.denial.as_deref(), Some("role_not_allowed"));
        let r = annotations(
            &[("x-hipaa-subject", " ")],
            &[("x-hipaa-denial", "plaintext")],
        );
        assert_eq!(r.denial.as_deref(), Some("plaintext"));
        assert_eq!(r.subject, None);

        // A second read (on_log after the response headers) keeps what the first found.
        let mut r = annotations(
            &[("x-hipaa-subject", "alice"), ("x-hipaa-denial", "a")],
            &[],
        );
        r.read_annotations(
            |_| None,
            |n| (n == "x-hipaa-denial").then(|| "b".to_string()),
        );
        assert_eq!(r.subject.as_deref(), Some("alice"));
        assert_eq!(r.denial.as_deref(), Some("a"));
    }

    #[test]
    fn an_allowed_break_glass_read_record() {
        let conn = ConnectionFacts {
            source_address: Some("[::1]:4000".into()),
            tls_version: None,
            peer_uri_san: None,
        };
        let req = gather(
            &[
                (":method", "GET"),
                (":path", "/fhir/Patient/42"),
                ("x-request-id", "r"),
            ],
            &conn,
        );
        let mut resp = annotations(
            &[
                ("x-hipaa-subject", "alice"),
                ("x-hipaa-roles", "clinician"),
                ("x-hipaa-amr", "pwd,otp"),
                ("x-hipaa-break-glass", "patient-emergency"),
                ("x-hipaa-tls", "TLSv1.3"),
                ("x-hipaa-peer", "spiffe://p"),
            ],
            &[],
        );
        resp.status = 200;
        resp.bytes = 512;
        resp.end_ms = 1_012;
        let r = build_record(&req, &resp);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "access");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["requestId"], "r");
        assert_eq!(v["actor"]["subject"], "alice");
        assert_eq!(v["actor"]["roles"], json!(["clinician"]));
        assert_eq!(v["actor"]["amr"], json!(["pwd", "otp"]));
        assert_eq!(v["actor"]["session"], json!(null));
        assert_eq!(v["actor"]["peer"], "spiffe://p");
        assert_eq!(
            v["action"],
            json!({"method": "GET", "path": "/fhir/Patient/42", "route": "patient-record", "operation": "read"})
        );
        assert_eq!(v["resource"], json!({"patient": "42", "type": "Patient"}));
        assert_eq!(v["inference"], json!(null));
        assert_eq!(v["egress"], json!(null));
        assert_eq!(
            v["source"],
            json!({"ip": "::1", "userAgent": null, "tls": "TLSv1.3"})
        );
        assert_eq!(v["emergency"], json!({"reason": "patient-emergency"}));
        assert_eq!(
            v["outcome"],
            json!({"decision": "allow", "status": 200, "reason": null, "bytes": 512, "durationMs": 12})
        );
    }

    fn inference_call() -> RequestFacts {
        gather(
            &[
                (":method", "POST"),
                (":path", "/ai/risk"),
                ("x-model-name", "sepsis-risk"),
                ("x-model-version", "4.2.0"),
            ],
            &ConnectionFacts::default(),
        )
    }

    #[test]
    fn an_inference_record_states_the_answer_by_its_sha256() {
        let answer = br#"{"risk":0.42}"#;
        let mut digest = BodyDigest::default();
        // In chunks, as Envoy hands a body over: the same hash as the whole body at once.
        digest.update(&answer[..5]);
        digest.update(b"");
        digest.update(&answer[5..]);
        let mut resp = ResponseFacts {
            status: 200,
            body: Some(digest.finish(Some("r1".into()))),
            ..ResponseFacts::default()
        };
        let v = serde_json::to_value(build_record(&inference_call(), &resp)).unwrap();
        // printf '{"risk":0.42}' | sha256sum
        let expected = "659a88af9bab93095dfc32b80529411885a3cc9dd4d30165f452df2eb5bd0691";
        assert_eq!(
            v["inference"],
            json!({"model": "sepsis-risk", "version": "4.2.0",
                   "responseSha256": expected, "responseSignatureKeyId": "r1"})
        );
        // Hashed by a stage that did not sign it: no key id, the hash alone.
        let mut digest = BodyDigest::default();
        digest.update(answer);
        resp.body = Some(digest.finish(None));
        let v = serde_json::to_value(build_record(&inference_call(), &resp)).unwrap();
        assert_eq!(v["inference"]["responseSha256"], json!(expected));
        assert!(v["inference"].get("responseSignatureKeyId").is_none());
    }

    #[test]
    fn no_answer_no_hash_member() {
        let empty = BodyDigest::default().finish(Some("r1".into()));
        let mut some = BodyDigest::default();
        some.update(b"{}");
        let some = some.finish(Some("r1".into()));
        let cases = [
            // The body never reached its end (the client left): nothing to state.
            (None, None),
            // An empty body is no answer.
            (Some(empty), None),
            // A refusal's body is the mesh's, not the model's.
            (Some(some), Some("bad_signature")),
        ];
        for (body, denial) in cases {
            let resp = ResponseFacts {
                status: 200,
                body,
                denial: denial.map(String::from),
                ..ResponseFacts::default()
            };
            let v = serde_json::to_value(build_record(&inference_call(), &resp)).unwrap();
            // Absent, not null: such a record is byte for byte what it was before the member.
            assert_eq!(
                v["inference"],
                json!({"model": "sepsis-risk", "version": "4.2.0"})
            );
        }
        // Not an inference route: no inference section, whatever the body.
        let mut some = BodyDigest::default();
        some.update(b"{}");
        let resp = ResponseFacts {
            status: 200,
            body: Some(some.finish(None)),
            ..ResponseFacts::default()
        };
        let req = gather(
            &[(":method", "GET"), (":path", "/fhir/Patient/42")],
            &ConnectionFacts::default(),
        );
        let v = serde_json::to_value(build_record(&req, &resp)).unwrap();
        assert_eq!(v["inference"], json!(null));
    }

    #[test]
    fn a_denied_and_an_aborted_record() {
        let req = gather(
            &[
                (":method", "POST"),
                (":path", "/ai/risk"),
                ("x-model-name", "m"),
            ],
            &ConnectionFacts::default(),
        );
        let mut resp = annotations(&[("x-hipaa-denial", "missing_token")], &[]);
        resp.status = 401;
        resp.end_ms = 500; // a clock that went backwards: duration 0, never negative
        let v = serde_json::to_value(build_record(&req, &resp)).unwrap();
        assert_eq!(
            v["actor"],
            json!({"subject": null, "roles": null, "session": null, "amr": null, "peer": null})
        );
        assert_eq!(v["action"]["operation"], "inference");
        assert_eq!(v["inference"], json!({"model": "m", "version": null}));
        assert_eq!(
            v["outcome"],
            json!({"decision": "deny", "status": 401, "reason": "missing_token", "bytes": 0, "durationMs": 0})
        );

        let aborted = ResponseFacts {
            subject: Some("bob".into()),
            end_ms: 3_000,
            ..Default::default()
        };
        let v = serde_json::to_value(build_record(&req, &aborted)).unwrap();
        assert_eq!(v["outcome"]["status"], 0);
        assert_eq!(v["outcome"]["decision"], "allow");
        assert_eq!(v["outcome"]["durationMs"], 2_000);
    }

    #[test]
    fn chain_ids_are_hex_and_depend_on_the_seed() {
        let a = chain_id_from_seed(b"1");
        let b = chain_id_from_seed(b"2");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(a, chain_id_from_seed(b"1"));
    }

    fn egress_policy() -> crate::policy::Egress {
        serde_json::from_value(json!({"baaVendors": [
            {"host": "api.llm-vendor.example.", "baaId": "BAA-2026-014", "expires": "2027-06-30"},
            {"host": "old.vendor.example", "baaId": "BAA-2019-001", "expires": "2020-01-01"}
        ]}))
        .unwrap()
    }

    #[test]
    fn egress_facts_name_the_host_and_its_baa_on_outbound_listeners_only() {
        let e = egress_policy();
        let listed = egress_facts(&e, Some(2), Some("API.LLM-Vendor.example:443")).unwrap();
        assert_eq!(listed.host.as_deref(), Some("api.llm-vendor.example"));
        assert_eq!(listed.baa_id.as_deref(), Some("BAA-2026-014"));
        // An expired vendor keeps its BAA id in the record: the outcome says it was refused.
        let expired = egress_facts(&e, Some(2), Some("old.vendor.example")).unwrap();
        assert_eq!(expired.baa_id.as_deref(), Some("BAA-2019-001"));
        let unlisted = egress_facts(&e, Some(2), Some("api.openai.example")).unwrap();
        assert_eq!(unlisted.host.as_deref(), Some("api.openai.example"));
        assert_eq!(unlisted.baa_id, None);
        let no_host = egress_facts(&e, Some(2), None).unwrap();
        assert_eq!((no_host.host, no_host.baa_id), (None, None));
        // Inbound (1) or unset (0, None): no egress section.
        for direction in [Some(1), Some(0), None] {
            assert_eq!(
                egress_facts(&e, direction, Some("api.llm-vendor.example")),
                None
            );
        }
    }

    #[test]
    fn the_egress_section_reaches_the_record() {
        let mut req = gather(
            &[(":method", "POST"), (":path", "/v1/chat")],
            &ConnectionFacts::default(),
        );
        req.egress = egress_facts(&egress_policy(), Some(2), Some("api.llm-vendor.example"));
        let v = serde_json::to_value(build_record(&req, &ResponseFacts::default())).unwrap();
        assert_eq!(
            v["egress"],
            json!({"host": "api.llm-vendor.example", "baaId": "BAA-2026-014"})
        );
        // The path matches no PHI route, yet a call out of the mesh is always recorded.
        assert_eq!(req.class(), RouteClass::Phi);
    }

    #[test]
    fn a_failed_filter_vm_is_a_refusal_not_an_answer() {
        let req = gather(
            &[(":method", "GET"), (":path", "/fhir/Patient/1")],
            &ConnectionFacts::default(),
        );
        let mut resp = ResponseFacts {
            status: 503,
            code_details: Some("wasm_fail_stream".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(build_record(&req, &resp)).unwrap();
        assert_eq!(v["outcome"]["decision"], "deny");
        assert_eq!(v["outcome"]["reason"], FILTER_FAILED);
        // The app's own 503 is the app's answer: allowed by the mesh.
        resp.code_details = Some("via_upstream".into());
        let v = serde_json::to_value(build_record(&req, &resp)).unwrap();
        assert_eq!(v["outcome"]["decision"], "allow");
        assert_eq!(v["outcome"]["reason"], serde_json::Value::Null);
        // A hipaa filter's own reason wins.
        resp.denial = Some("missing_token".into());
        resp.code_details = Some("wasm_fail_stream".into());
        assert_eq!(resp.reason().as_deref(), Some("missing_token"));
    }

    #[test]
    fn a_jwt_authn_401_before_the_mesh_filter_is_a_denial() {
        // Istio's RequestAuthentication answers before the combined filter decodes the request;
        // the record is sealed at log time from Envoy's code details.
        let req = gather(
            &[(":method", "GET"), (":path", "/healthz")],
            &ConnectionFacts::default(),
        );
        let resp = ResponseFacts {
            status: 401,
            code_details: Some("jwt_authn_access_denied{Jwt_verification_fails}".into()),
            ..Default::default()
        };
        assert!(resp.denied());
        let v = serde_json::to_value(build_record(&req, &resp)).unwrap();
        assert_eq!(v["outcome"]["decision"], "deny");
        assert_eq!(v["outcome"]["reason"], JWT_AUTHN_DENIED);
        // Recorded on every route class, as any other refusal.
        assert!(should_record(RouteClass::Public, resp.denied(), false));
    }
}
