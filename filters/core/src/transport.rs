//! Transmission security (45 CFR 164.312(e)(1)) and the mTLS half of entity authentication
//! (164.312(d)): decide from the connection's facts whether a request may pass.
//!
//! Inbound (`xds.listener_direction` not 2): no plaintext, TLS at or above `minTlsVersion`, a
//! client certificate when `requireMtls`, a peer SPIFFE id in `allowedPeers` when that list is
//! non-empty. Outbound (direction 2): the request's host must be a listed BAA vendor whose
//! agreement has not expired. A missing or unreadable attribute is a denial, never a pass.
//!
//! The filter shell reads the attributes into [`ConnectionFacts`], the request line into
//! [`RequestLine`], calls [`decide`], and applies the [`Decision`]: continue (with the
//! annotation headers for the audit filter), or a local reply with the denial's status and body.

use crate::calendar::Date;
use crate::integrity::{self, MacKeyRing, ResponseSigner, ResponseSigningKey};
use crate::policy::schema::{BaaVendor, Egress, TlsVersion, UnlistedHosts};
use crate::policy::Policy;
use crate::routes::RouteMatch;

/// `xds.listener_direction` for an outbound listener (Envoy's `TrafficDirection.OUTBOUND`).
pub const DIRECTION_OUTBOUND: i64 = 2;

/// Request headers the transport filter sets for the audit filter and the upstream. Every
/// incoming `x-hipaa-*` header is removed before these are set, so none can be spoofed.
pub const HEADER_PREFIX: &str = "x-hipaa-";
pub const HEADER_TLS: &str = "x-hipaa-tls";
pub const HEADER_PEER: &str = "x-hipaa-peer";
pub const HEADER_BAA: &str = "x-hipaa-baa";
pub const HEADER_DENIAL: &str = "x-hipaa-denial";

/// Methods that write, for `verifyRequests`.
pub const WRITE_METHODS: [&str; 4] = ["POST", "PUT", "PATCH", "DELETE"];

/// What the host says about the downstream connection. `None`: the attribute was missing or
/// could not be read (wrong type, host error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// `connection.tls_version`: `TLSv1`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`; absent on plaintext.
    pub tls_version: Option<String>,
    /// `connection.mtls`: a peer certificate was presented (validation is the TLS context's job).
    pub mtls: Option<bool>,
    /// `connection.uri_san_peer_certificate`: the first URI SAN, the peer's SPIFFE id.
    pub peer_uri_san: Option<String>,
    /// `xds.listener_direction`: 1 inbound, 2 outbound, 0 unset.
    pub direction: Option<i64>,
}

/// The parts of the request the transport decision needs.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// `:authority` (or `host`); may carry a port.
    pub authority: Option<&'a str>,
}

/// Which set of rules applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// Only an explicit 2 is outbound; unset, 1, or an unreadable value get the inbound rules.
    pub fn of(direction: Option<i64>) -> Direction {
        if direction == Some(DIRECTION_OUTBOUND) {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }
}

/// A TLS protocol version as Envoy names it, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl ProtocolVersion {
    /// Envoy (BoringSSL) names: `TLSv1`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`. `TLSv1.0` is accepted
    /// as an alias. Anything else (`unknown`, `SSLv3`, empty) is not a version we can rank.
    pub fn parse(s: &str) -> Option<ProtocolVersion> {
        match s {
            "TLSv1" | "TLSv1.0" => Some(ProtocolVersion::Tls10),
            "TLSv1.1" => Some(ProtocolVersion::Tls11),
            "TLSv1.2" => Some(ProtocolVersion::Tls12),
            "TLSv1.3" => Some(ProtocolVersion::Tls13),
            _ => None,
        }
    }

    fn minimum(v: TlsVersion) -> ProtocolVersion {
        match v {
            TlsVersion::Tls12 => ProtocolVersion::Tls12,
            TlsVersion::Tls13 => ProtocolVersion::Tls13,
        }
    }
}

/// Why a request was refused. Each variant is one status code and one snake_case reason (the
/// JSON body's `error`, the audit record's `outcome.reason`, the stats counter's suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The connection is not TLS and the route does not allow plaintext.
    PlaintextRefused,
    /// A connection attribute the decision needs was missing or unreadable.
    AttributeUnavailable { attribute: &'static str },
    /// The TLS version is below `minTlsVersion`.
    TlsVersionTooLow { version: String },
    /// The TLS version is not one we can rank.
    TlsVersionUnknown { version: String },
    /// `requireMtls` and no client certificate was presented.
    ClientCertificateRequired,
    /// `allowedPeers` is non-empty and the peer's SPIFFE id is missing or not in it.
    PeerNotAllowed { peer: Option<String> },
    /// Outbound with no usable host (missing, empty, or malformed authority).
    EgressHostMissing,
    /// Outbound to a host that is not a listed BAA vendor.
    EgressHostNotListed { host: String },
    /// Outbound to a vendor whose BAA has expired.
    EgressBaaExpired {
        host: String,
        baa_id: String,
        expires: String,
    },
    /// `verifyRequests` on a write and no signature header.
    RequestSignatureMissing,
    /// `verifyRequests` on a write and the signature header is malformed, names another key,
    /// or does not match the body.
    RequestSignatureInvalid,
    /// A body to verify is larger than `transport.maxBodyBytes`.
    RequestBodyTooLarge,
    /// The integrity key is missing or unusable: nothing can be signed or verified.
    IntegrityKeyUnavailable,
    /// The filter has no valid policy (Envoy should have refused to load it).
    Unconfigured,
}

impl Denial {
    /// Every reason code, for stats counters defined at start.
    pub const CODES: [&'static str; 14] = [
        "plaintext_refused",
        "connection_attribute_unavailable",
        "tls_version_too_low",
        "tls_version_unknown",
        "client_certificate_required",
        "peer_not_allowed",
        "egress_host_missing",
        "egress_host_not_listed",
        "egress_baa_expired",
        "request_signature_missing",
        "request_signature_invalid",
        "request_body_too_large",
        "integrity_key_unavailable",
        "filter_unconfigured",
    ];

    /// Index into [`Denial::CODES`].
    pub fn index(&self) -> usize {
        match self {
            Denial::PlaintextRefused => 0,
            Denial::AttributeUnavailable { .. } => 1,
            Denial::TlsVersionTooLow { .. } => 2,
            Denial::TlsVersionUnknown { .. } => 3,
            Denial::ClientCertificateRequired => 4,
            Denial::PeerNotAllowed { .. } => 5,
            Denial::EgressHostMissing => 6,
            Denial::EgressHostNotListed { .. } => 7,
            Denial::EgressBaaExpired { .. } => 8,
            Denial::RequestSignatureMissing => 9,
            Denial::RequestSignatureInvalid => 10,
            Denial::RequestBodyTooLarge => 11,
            Denial::IntegrityKeyUnavailable => 12,
            Denial::Unconfigured => 13,
        }
    }

    pub fn code(&self) -> &'static str {
        Denial::CODES
            .get(self.index())
            .copied()
            .unwrap_or("filter_unconfigured")
    }

    /// 403 for every transport, peer, egress and signature refusal; 413 for a request body too
    /// large to verify; 503 when the key is unusable or the filter unconfigured (the filter is
    /// misdeployed, not the client wrong).
    pub fn status(&self) -> u32 {
        match self {
            Denial::RequestBodyTooLarge => 413,
            Denial::IntegrityKeyUnavailable | Denial::Unconfigured => 503,
            _ => 403,
        }
    }

    /// A human sentence for `error_description`. Names no secret and no PHI; hosts, versions and
    /// SPIFFE ids are configuration-level facts.
    pub fn description(&self) -> String {
        match self {
            Denial::PlaintextRefused => "plaintext connections are refused; use TLS".into(),
            Denial::AttributeUnavailable { attribute } => {
                format!("the connection attribute `{attribute}` could not be read; refused")
            }
            Denial::TlsVersionTooLow { version } => {
                format!("TLS version {version} is below the required minimum")
            }
            Denial::TlsVersionUnknown { version } => {
                format!("TLS version `{version}` is not recognised; refused")
            }
            Denial::ClientCertificateRequired => {
                "a client certificate (mutual TLS) is required".into()
            }
            Denial::PeerNotAllowed { peer: Some(p) } => {
                format!("peer `{p}` is not an allowed peer")
            }
            Denial::PeerNotAllowed { peer: None } => {
                "the peer presented no SPIFFE id; only listed peers are allowed".into()
            }
            Denial::EgressHostMissing => "the request names no usable host".into(),
            Denial::EgressHostNotListed { host } => {
                format!("`{host}` is not a vendor with a Business Associate Agreement")
            }
            Denial::EgressBaaExpired {
                host,
                baa_id,
                expires,
            } => format!(
                "the Business Associate Agreement {baa_id} for `{host}` expired on {expires}"
            ),
            Denial::RequestSignatureMissing => "this route requires a body signature".into(),
            Denial::RequestSignatureInvalid => "the body signature is not valid".into(),
            Denial::RequestBodyTooLarge => "the request body is larger than the limit".into(),
            Denial::IntegrityKeyUnavailable => "the integrity key is not available".into(),
            Denial::Unconfigured => "the transport filter has no valid policy".into(),
        }
    }

    /// The `error` category, the same vocabulary as every hipaa-mesh denial (see
    /// `crate::denial`); the specific reason is `code()`, carried in `x-hipaa-denial` and stats.
    pub fn error(&self) -> &'static str {
        match self.status() {
            413 => "request_too_large",
            503 => "temporarily_unavailable",
            _ => "access_denied",
        }
    }

    /// The contract's JSON denial body.
    pub fn body(&self, request_id: &str) -> String {
        serde_json::json!({
            "error": self.error(),
            "error_description": self.description(),
            "request_id": request_id,
        })
        .to_string()
    }
}

/// What to do with the bodies of an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyPlan {
    /// Buffer the request body (up to `max_body_bytes`) and verify its signature header.
    pub verify_request: bool,
    /// Sign the response body as it streams; the signature goes in a trailer (a header when
    /// the response has no body).
    pub sign_response: bool,
    pub max_body_bytes: u32,
}

impl BodyPlan {
    /// A declared or buffered size over the limit.
    pub fn too_large(&self, len: u64) -> bool {
        len > u64::from(self.max_body_bytes)
    }
}

/// An allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    pub direction: Direction,
    /// The BAA of the vendor an outbound call goes to (None: inbound, or an unlisted host
    /// allowed by an `unlisted-egress` exception).
    pub baa_id: Option<String>,
    pub body: BodyPlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Allowance),
    Deny(Denial),
}

/// The decision and the request headers to set for the audit filter (after removing every
/// incoming `x-hipaa-*`). Denials carry the TLS facts too, so the audit record of a refusal
/// says what the connection was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub annotations: Vec<(&'static str, String)>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allow(_))
    }
}

/// The transport decision for one request. `now_unix` is the host's clock in Unix seconds;
/// None (the host could not say) refuses every listed vendor rather than guess an expiry.
pub fn decide(
    facts: &ConnectionFacts,
    request: &RequestLine<'_>,
    policy: &Policy,
    now_unix: Option<i64>,
) -> Decision {
    match Direction::of(facts.direction) {
        Direction::Outbound => decide_egress(request.authority, policy, now_unix),
        Direction::Inbound => decide_inbound(facts, request, policy),
    }
}

fn decide_inbound(facts: &ConnectionFacts, request: &RequestLine<'_>, policy: &Policy) -> Decision {
    let matched = policy.routes.find(request.method, request.path);
    let route = matched.route();
    let mut annotations = Vec::new();
    if let Some(v) = facts.tls_version.as_deref().filter(|v| !v.is_empty()) {
        annotations.push((HEADER_TLS, v.to_string()));
    }
    if let Some(p) = facts.peer_uri_san.as_deref().filter(|p| !p.is_empty()) {
        annotations.push((HEADER_PEER, p.to_string()));
    }
    let verdict = match inbound_denial(facts, &matched, policy) {
        Some(denial) => Verdict::Deny(denial),
        None => {
            let write = WRITE_METHODS.contains(&request.method);
            Verdict::Allow(Allowance {
                direction: Direction::Inbound,
                baa_id: None,
                body: BodyPlan {
                    verify_request: route.is_some_and(|r| r.verify_requests) && write,
                    sign_response: route.is_some_and(|r| r.sign_responses),
                    max_body_bytes: policy.spec.transport.max_body_bytes,
                },
            })
        }
    };
    Decision {
        verdict,
        annotations,
    }
}

fn inbound_denial(
    facts: &ConnectionFacts,
    matched: &RouteMatch<'_>,
    policy: &Policy,
) -> Option<Denial> {
    let t = &policy.spec.transport;
    // Only a public route that says `allowPlaintext` (validation enforces the pairing) skips
    // the transport rules: nothing it serves is weaker over plaintext than over any TLS.
    let plaintext_ok = matched.route().is_some_and(|r| r.allow_plaintext);
    let tls = facts.tls_version.as_deref().filter(|v| !v.is_empty());
    let version = match (tls, facts.mtls) {
        (_, _) if plaintext_ok => return None,
        // Envoy reports no TLS version and `mtls: false` on a plaintext connection.
        (None, Some(false)) => return Some(Denial::PlaintextRefused),
        (None, _) => {
            return Some(Denial::AttributeUnavailable {
                attribute: "connection.tls_version",
            })
        }
        (Some(v), _) => v,
    };
    match ProtocolVersion::parse(version) {
        None => {
            return Some(Denial::TlsVersionUnknown {
                version: version.to_string(),
            })
        }
        Some(v) if v < ProtocolVersion::minimum(t.min_tls_version) => {
            return Some(Denial::TlsVersionTooLow {
                version: version.to_string(),
            })
        }
        Some(_) => {}
    }
    let needs_cert = t.require_mtls || !t.allowed_peers.is_empty();
    if needs_cert {
        match facts.mtls {
            None => {
                return Some(Denial::AttributeUnavailable {
                    attribute: "connection.mtls",
                })
            }
            Some(false) if t.require_mtls => return Some(Denial::ClientCertificateRequired),
            _ => {}
        }
    }
    if !t.allowed_peers.is_empty() {
        let peer = facts
            .peer_uri_san
            .as_deref()
            .filter(|p| !p.is_empty() && facts.mtls == Some(true));
        if !peer.is_some_and(|p| t.allowed_peers.iter().any(|a| a == p)) {
            return Some(Denial::PeerNotAllowed {
                peer: peer.map(String::from),
            });
        }
    }
    None
}

fn decide_egress(authority: Option<&str>, policy: &Policy, now_unix: Option<i64>) -> Decision {
    let e = &policy.spec.egress;
    let verdict = match authority.and_then(normalize_host) {
        None => Verdict::Deny(Denial::EgressHostMissing),
        Some(host) => {
            let vendor = baa_vendor(e, &host);
            match vendor {
                Some(_) if now_unix.is_none() => {
                    Verdict::Deny(Denial::AttributeUnavailable { attribute: "time" })
                }
                Some(v) if now_unix.is_some_and(|now| baa_in_force(&v.expires, now)) => {
                    Verdict::Allow(Allowance {
                        direction: Direction::Outbound,
                        baa_id: Some(v.baa_id.clone()),
                        body: BodyPlan::default(),
                    })
                }
                // An expired BAA is refused even when unlisted hosts are allowed: the policy
                // names this vendor, and its agreement has lapsed.
                Some(v) => Verdict::Deny(Denial::EgressBaaExpired {
                    host,
                    baa_id: v.baa_id.clone(),
                    expires: v.expires.clone(),
                }),
                // A call to another workload of the mesh never leaves it: no BAA applies.
                None if is_mesh_host(e, &host) => Verdict::Allow(Allowance {
                    direction: Direction::Outbound,
                    baa_id: None,
                    body: BodyPlan::default(),
                }),
                None if e.unlisted_hosts == UnlistedHosts::Allow => Verdict::Allow(Allowance {
                    direction: Direction::Outbound,
                    baa_id: None,
                    body: BodyPlan::default(),
                }),
                None => Verdict::Deny(Denial::EgressHostNotListed { host }),
            }
        }
    };
    let annotations = match &verdict {
        Verdict::Allow(Allowance {
            baa_id: Some(id), ..
        }) => vec![(HEADER_BAA, id.clone())],
        _ => Vec::new(),
    };
    Decision {
        verdict,
        annotations,
    }
}

/// `verifyRequests`: the whole request body against its signature header (read before the
/// incoming `x-hipaa-*` headers were removed).
pub fn verify_request_body(
    keys: Option<&MacKeyRing>,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<(), Denial> {
    let keys = keys.ok_or(Denial::IntegrityKeyUnavailable)?;
    let header = signature_header.ok_or(Denial::RequestSignatureMissing)?;
    integrity::verify(keys, header, body).map_err(|_| Denial::RequestSignatureInvalid)
}

/// `signResponses`: a streaming signer for the response body with the response key (Ed25519;
/// the signature goes in a trailer, so nothing is buffered; see [`integrity`]).
pub fn response_signer(key: Option<&ResponseSigningKey>) -> Result<ResponseSigner, Denial> {
    key.map(ResponseSigner::new)
        .ok_or(Denial::IntegrityKeyUnavailable)
}

/// The listed vendor for a normalized host (case-insensitive; a trailing dot in the policy's
/// host is ignored), whether or not its BAA is still in force.
pub fn baa_vendor<'a>(egress: &'a Egress, host: &str) -> Option<&'a BaaVendor> {
    egress
        .baa_vendors
        .iter()
        .find(|v| v.host.trim_end_matches('.').eq_ignore_ascii_case(host))
}

/// Whether a normalized host is one of `egress.meshHosts` (exact, or under a `*.` suffix;
/// the suffix itself does not match its wildcard).
pub fn is_mesh_host(egress: &Egress, host: &str) -> bool {
    egress.mesh_hosts.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.');
        match pattern.strip_prefix("*.") {
            Some(suffix) => host
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", suffix.to_ascii_lowercase())),
            None => host.eq_ignore_ascii_case(pattern),
        }
    })
}

/// `expires` is a UTC date and the agreement is valid through that whole day. An unparsable
/// date (validation refuses it) counts as expired.
pub fn baa_in_force(expires: &str, now_unix: i64) -> bool {
    Date::parse(expires).is_some_and(|d| Date::from_unix(now_unix) <= d)
}

/// The host of an authority, lower-cased, without port and without one trailing dot.
/// `[::1]:443` gives `::1`. None for an empty or malformed authority (userinfo, an unclosed
/// bracket, a non-numeric port, whitespace).
pub fn normalize_host(authority: &str) -> Option<String> {
    let a = authority.trim();
    if a.is_empty() || a.contains('@') || a.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        if inside.is_empty() || !inside.contains(':') {
            return None;
        }
        (inside, port)
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.contains('/') || host.contains('[') || host.contains(']') {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::remote_idp;
    use serde_json::json;

    const NOW: Option<i64> = Some(1_795_392_000 + 3600); // 2026-11-23T01:00:00Z

    fn policy_with(transport: serde_json::Value, egress: serde_json::Value) -> Policy {
        let mut spec = json!({
            "identity": {"providers": [remote_idp()]},
            "routes": [
                {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
                {"name": "meta", "match": {"path": "/metadata"}, "public": true},
                {"name": "risk", "match": {"pathPrefix": "/ai/risk"}, "phi": true,
                 "inference": {"modelHeader": "x-model-name", "versionHeader": "x-model-version"}},
                {"name": "orders", "match": {"pathPrefix": "/orders"}, "phi": true,
                 "verifyRequests": true, "signResponses": true}
            ],
            "audit": {"collector": {"cluster": "audit-collector"}},
            "transport": transport,
            "egress": egress,
        });
        if spec["egress"]["unlistedHosts"] == "allow" {
            spec["exceptions"] = json!([{"safeguard": "unlisted-egress",
                "justification": "sandbox cluster without PHI"}]);
        }
        Policy::from_spec_value(spec).unwrap()
    }

    fn policy() -> Policy {
        policy_with(
            json!({"allowedPeers": ["spiffe://cluster.local/ns/ehr/sa/web"]}),
            json!({"baaVendors": [
                {"host": "api.llm-vendor.example", "baaId": "BAA-2026-014", "expires": "2027-06-30"},
                {"host": "old.vendor.example", "baaId": "BAA-2020-001", "expires": "2026-11-22"},
                {"host": "today.vendor.example", "baaId": "BAA-2025-007", "expires": "2026-11-23"}
            ]}),
        )
    }

    fn inbound(tls: Option<&str>, mtls: Option<bool>, peer: Option<&str>) -> ConnectionFacts {
        ConnectionFacts {
            tls_version: tls.map(String::from),
            mtls,
            peer_uri_san: peer.map(String::from),
            direction: Some(1),
        }
    }

    fn outbound() -> ConnectionFacts {
        ConnectionFacts {
            direction: Some(DIRECTION_OUTBOUND),
            ..Default::default()
        }
    }

    fn get(path: &str) -> RequestLine<'_> {
        RequestLine {
            method: "GET",
            path,
            authority: Some("ehr-api.ehr.svc"),
        }
    }

    fn to(authority: &str) -> RequestLine<'_> {
        RequestLine {
            method: "POST",
            path: "/v1/chat",
            authority: Some(authority),
        }
    }

    const WEB: &str = "spiffe://cluster.local/ns/ehr/sa/web";

    fn denial(d: Decision) -> Denial {
        match d.verdict {
            Verdict::Deny(d) => d,
            Verdict::Allow(a) => panic!("allowed: {a:?}"),
        }
    }

    fn allowance(d: Decision) -> Allowance {
        match d.verdict {
            Verdict::Allow(a) => a,
            Verdict::Deny(d) => panic!("denied: {d:?}"),
        }
    }

    #[test]
    fn allowed_peer_over_tls13_passes_with_annotations() {
        let d = decide(
            &inbound(Some("TLSv1.3"), Some(true), Some(WEB)),
            &get("/fhir/Patient/1"),
            &policy(),
            NOW,
        );
        assert_eq!(
            d.annotations,
            vec![(HEADER_TLS, "TLSv1.3".into()), (HEADER_PEER, WEB.into())]
        );
        let a = allowance(d);
        assert_eq!(a.direction, Direction::Inbound);
        assert_eq!(a.baa_id, None);
        assert!(!a.body.sign_response && !a.body.verify_request);
    }

    #[test]
    fn tls12_meets_the_default_minimum() {
        let d = decide(
            &inbound(Some("TLSv1.2"), Some(true), Some(WEB)),
            &get("/x"),
            &policy(),
            NOW,
        );
        assert!(d.is_allowed());
    }

    #[test]
    fn plaintext_is_refused_with_403() {
        let d = denial(decide(
            &inbound(None, Some(false), None),
            &get("/fhir/x"),
            &policy(),
            NOW,
        ));
        assert_eq!(d, Denial::PlaintextRefused);
        assert_eq!((d.status(), d.code()), (403, "plaintext_refused"));
    }

    #[test]
    fn plaintext_is_refused_on_public_routes_without_allow_plaintext() {
        let d = denial(decide(
            &inbound(None, Some(false), None),
            &get("/metadata"),
            &policy(),
            NOW,
        ));
        assert_eq!(d, Denial::PlaintextRefused);
    }

    #[test]
    fn allow_plaintext_public_route_passes_plaintext() {
        let d = decide(
            &inbound(None, Some(false), None),
            &get("/healthz"),
            &policy(),
            NOW,
        );
        assert!(d.is_allowed());
        assert!(d.annotations.is_empty());
        // Only the exact route: a suspicious spelling of it is not public.
        let d = decide(
            &inbound(None, Some(false), None),
            &get("//healthz"),
            &policy(),
            NOW,
        );
        assert_eq!(denial(d), Denial::PlaintextRefused);
    }

    #[test]
    fn missing_attributes_are_denials() {
        let p = policy();
        let d = denial(decide(&inbound(None, None, None), &get("/x"), &p, NOW));
        assert_eq!(
            d,
            Denial::AttributeUnavailable {
                attribute: "connection.tls_version"
            }
        );
        assert_eq!(
            (d.status(), d.code()),
            (403, "connection_attribute_unavailable")
        );
        // TLS version missing but a certificate claimed: inconsistent, refused.
        let d = denial(decide(
            &inbound(None, Some(true), Some(WEB)),
            &get("/x"),
            &p,
            NOW,
        ));
        assert_eq!(d.code(), "connection_attribute_unavailable");
        // Empty string is not a version.
        let d = denial(decide(&inbound(Some(""), None, None), &get("/x"), &p, NOW));
        assert_eq!(d.code(), "connection_attribute_unavailable");
        let d = denial(decide(
            &inbound(Some("TLSv1.3"), None, Some(WEB)),
            &get("/x"),
            &p,
            NOW,
        ));
        assert_eq!(
            d,
            Denial::AttributeUnavailable {
                attribute: "connection.mtls"
            }
        );
        let d = denial(decide(
            &inbound(Some("TLSv1.3"), Some(true), None),
            &get("/x"),
            &p,
            NOW,
        ));
        assert_eq!(d, Denial::PeerNotAllowed { peer: None });
    }

    #[test]
    fn old_tls_is_refused() {
        for v in ["TLSv1", "TLSv1.0", "TLSv1.1"] {
            let d = denial(decide(
                &inbound(Some(v), Some(true), Some(WEB)),
                &get("/x"),
                &policy(),
                NOW,
            ));
            assert_eq!(d, Denial::TlsVersionTooLow { version: v.into() });
            assert_eq!((d.status(), d.code()), (403, "tls_version_too_low"));
        }
    }

    #[test]
    fn unknown_tls_version_is_refused() {
        for v in ["SSLv3", "unknown", "tlsv1.3", "TLSv1.4"] {
            let d = denial(decide(
                &inbound(Some(v), Some(true), Some(WEB)),
                &get("/x"),
                &policy(),
                NOW,
            ));
            assert_eq!(d.code(), "tls_version_unknown", "{v}");
        }
    }

    #[test]
    fn tls13_minimum_refuses_tls12() {
        let p = policy_with(json!({"minTlsVersion": "TLSv1.3"}), json!({}));
        let d = denial(decide(
            &inbound(Some("TLSv1.2"), Some(true), None),
            &get("/x"),
            &p,
            NOW,
        ));
        assert_eq!(d.code(), "tls_version_too_low");
        assert!(decide(
            &inbound(Some("TLSv1.3"), Some(true), None),
            &get("/x"),
            &p,
            NOW
        )
        .is_allowed());
    }

    #[test]
    fn no_client_certificate_is_refused_when_mtls_required() {
        let d = denial(decide(
            &inbound(Some("TLSv1.3"), Some(false), None),
            &get("/x"),
            &policy(),
            NOW,
        ));
        assert_eq!(d, Denial::ClientCertificateRequired);
        assert_eq!((d.status(), d.code()), (403, "client_certificate_required"));
    }

    #[test]
    fn mtls_optional_allows_no_certificate_with_empty_peer_list() {
        let p = policy_with(json!({"requireMtls": false}), json!({}));
        assert!(decide(
            &inbound(Some("TLSv1.2"), Some(false), None),
            &get("/x"),
            &p,
            NOW
        )
        .is_allowed());
        // and does not need the mtls attribute at all
        assert!(decide(&inbound(Some("TLSv1.2"), None, None), &get("/x"), &p, NOW).is_allowed());
    }

    #[test]
    fn allowed_peers_without_required_mtls_still_need_a_listed_peer() {
        let p = policy_with(
            json!({"requireMtls": false, "allowedPeers": [WEB]}),
            json!({}),
        );
        let d = denial(decide(
            &inbound(Some("TLSv1.3"), Some(false), Some(WEB)),
            &get("/x"),
            &p,
            NOW,
        ));
        // A SAN without a presented certificate is not believed.
        assert_eq!(d, Denial::PeerNotAllowed { peer: None });
        assert!(decide(
            &inbound(Some("TLSv1.3"), Some(true), Some(WEB)),
            &get("/x"),
            &p,
            NOW
        )
        .is_allowed());
    }

    #[test]
    fn unlisted_peer_is_refused() {
        let other = "spiffe://cluster.local/ns/ehr/sa/batch";
        let d = denial(decide(
            &inbound(Some("TLSv1.3"), Some(true), Some(other)),
            &get("/x"),
            &policy(),
            NOW,
        ));
        assert_eq!(
            d,
            Denial::PeerNotAllowed {
                peer: Some(other.into())
            }
        );
        assert_eq!((d.status(), d.code()), (403, "peer_not_allowed"));
        // exact match only
        let d = denial(decide(
            &inbound(
                Some("TLSv1.3"),
                Some(true),
                Some("spiffe://cluster.local/ns/ehr/sa/web/x"),
            ),
            &get("/x"),
            &policy(),
            NOW,
        ));
        assert_eq!(d.code(), "peer_not_allowed");
    }

    #[test]
    fn empty_peer_list_allows_any_certificate() {
        let p = policy_with(json!({}), json!({}));
        let d = decide(
            &inbound(Some("TLSv1.3"), Some(true), None),
            &get("/x"),
            &p,
            NOW,
        );
        assert!(d.is_allowed());
        let d = decide(
            &inbound(
                Some("TLSv1.3"),
                Some(true),
                Some("spiffe://other.example/sa/x"),
            ),
            &get("/x"),
            &p,
            NOW,
        );
        assert!(d.is_allowed());
    }

    #[test]
    fn denials_carry_tls_facts_for_the_audit() {
        let d = decide(
            &inbound(Some("TLSv1.1"), Some(true), Some(WEB)),
            &get("/x"),
            &policy(),
            NOW,
        );
        assert!(!d.is_allowed());
        assert_eq!(
            d.annotations,
            vec![(HEADER_TLS, "TLSv1.1".into()), (HEADER_PEER, WEB.into())]
        );
    }

    #[test]
    fn direction_unset_or_unreadable_gets_inbound_rules() {
        for dir in [None, Some(0), Some(1), Some(7)] {
            let mut f = inbound(None, Some(false), None);
            f.direction = dir;
            assert_eq!(
                denial(decide(&f, &get("/x"), &policy(), NOW)),
                Denial::PlaintextRefused
            );
        }
    }

    #[test]
    fn body_plans_follow_the_route() {
        let ok = inbound(Some("TLSv1.3"), Some(true), Some(WEB));
        let p = policy();
        let a = allowance(decide(&ok, &get("/ai/risk"), &p, NOW));
        assert!(a.body.sign_response && !a.body.verify_request);
        assert_eq!(a.body.max_body_bytes, 1024 * 1024);
        let post = RequestLine {
            method: "POST",
            path: "/orders/1",
            authority: None,
        };
        let a = allowance(decide(&ok, &post, &p, NOW));
        assert!(a.body.sign_response && a.body.verify_request);
        // reads are not verified
        let a = allowance(decide(&ok, &get("/orders/1"), &p, NOW));
        assert!(a.body.sign_response && !a.body.verify_request);
        assert!(a.body.too_large(1024 * 1024 + 1));
        assert!(!a.body.too_large(1024 * 1024));
    }

    #[test]
    fn egress_to_a_listed_vendor_yields_the_baa() {
        for host in [
            "api.llm-vendor.example",
            "API.LLM-Vendor.Example",
            "api.llm-vendor.example:443",
            "api.llm-vendor.example.",
        ] {
            let d = decide(&outbound(), &to(host), &policy(), NOW);
            assert_eq!(
                d.annotations,
                vec![(HEADER_BAA, "BAA-2026-014".into())],
                "{host}"
            );
            let a = allowance(d);
            assert_eq!(a.direction, Direction::Outbound);
            assert_eq!(a.baa_id.as_deref(), Some("BAA-2026-014"));
            assert_eq!(a.body, BodyPlan::default());
        }
    }

    #[test]
    fn egress_to_mesh_hosts_needs_no_baa_and_never_widens() {
        let p = policy_with(
            json!({}),
            json!({"baaVendors": [], "meshHosts": ["*.svc.cluster.local", "ledger.internal"]}),
        );
        for host in [
            "results.lab.svc.cluster.local",
            "Results.Lab.SVC.cluster.local:8080",
            "ledger.internal",
            "LEDGER.internal:443",
        ] {
            let a = allowance(decide(&outbound(), &to(host), &p, NOW));
            assert_eq!(a.baa_id, None, "{host}");
            assert_eq!(a.direction, Direction::Outbound);
        }
        for host in [
            "svc.cluster.local",     // the suffix itself is not under its wildcard
            "evilsvc.cluster.local", // a suffix match must start at a label
            "svc.cluster.local.evil.example",
            "x.ledger.internal", // an exact entry is exact
            "api.openai.example",
        ] {
            let d = denial(decide(&outbound(), &to(host), &p, NOW));
            assert!(
                matches!(d, Denial::EgressHostNotListed { .. }),
                "{host}: {d:?}"
            );
        }
    }

    #[test]
    fn egress_ignores_transport_rules() {
        // The app talks plaintext to its own sidecar; outbound rules are egress rules.
        let d = decide(&outbound(), &to("api.llm-vendor.example"), &policy(), NOW);
        assert!(d.is_allowed());
    }

    #[test]
    fn egress_ipv6_literal_is_parsed_not_trusted() {
        // Policy validation lists host names only; a bracketed literal parses to its address
        // and is refused as unlisted, not as malformed.
        for a in ["[::1]:443", "[::1]"] {
            let d = denial(decide(&outbound(), &to(a), &policy(), NOW));
            assert_eq!(d, Denial::EgressHostNotListed { host: "::1".into() }, "{a}");
        }
    }

    #[test]
    fn egress_to_an_unlisted_host_is_refused() {
        for host in [
            "api.other-llm.example",
            "llm-vendor.example",
            "api.llm-vendor.example.evil.com",
        ] {
            let d = denial(decide(&outbound(), &to(host), &policy(), NOW));
            assert_eq!(d.code(), "egress_host_not_listed");
            assert_eq!(d.status(), 403);
        }
    }

    #[test]
    fn egress_without_a_usable_host_is_refused() {
        let p = policy();
        let none = RequestLine {
            method: "GET",
            path: "/",
            authority: None,
        };
        assert_eq!(
            denial(decide(&outbound(), &none, &p, NOW)),
            Denial::EgressHostMissing
        );
        for bad in [
            "",
            " ",
            "user@api.llm-vendor.example",
            "[::1",
            "api.llm-vendor.example:x",
            "a:",
        ] {
            assert_eq!(
                denial(decide(&outbound(), &to(bad), &p, NOW)),
                Denial::EgressHostMissing,
                "{bad}"
            );
        }
    }

    #[test]
    fn egress_baa_is_valid_through_its_expiry_day() {
        let p = policy();
        let a = allowance(decide(&outbound(), &to("today.vendor.example"), &p, NOW));
        assert_eq!(a.baa_id.as_deref(), Some("BAA-2025-007"));
        let last_second = 1_795_392_000 + 86_399;
        assert!(decide(
            &outbound(),
            &to("today.vendor.example"),
            &p,
            Some(last_second)
        )
        .is_allowed());
        let next_day = 1_795_392_000 + 86_400;
        let d = denial(decide(
            &outbound(),
            &to("today.vendor.example"),
            &p,
            Some(next_day),
        ));
        assert_eq!(d.code(), "egress_baa_expired");
    }

    #[test]
    fn egress_to_an_expired_vendor_is_refused() {
        let d = denial(decide(
            &outbound(),
            &to("old.vendor.example"),
            &policy(),
            NOW,
        ));
        assert_eq!(
            d,
            Denial::EgressBaaExpired {
                host: "old.vendor.example".into(),
                baa_id: "BAA-2020-001".into(),
                expires: "2026-11-22".into()
            }
        );
        assert_eq!(d.status(), 403);
        assert!(d.description().contains("BAA-2020-001"));
    }

    #[test]
    fn egress_without_a_clock_refuses_listed_vendors() {
        let d = denial(decide(
            &outbound(),
            &to("api.llm-vendor.example"),
            &policy(),
            None,
        ));
        assert_eq!(d, Denial::AttributeUnavailable { attribute: "time" });
    }

    #[test]
    fn unlisted_hosts_allow_passes_unlisted_but_not_expired() {
        let p = policy_with(
            json!({}),
            json!({"unlistedHosts": "allow", "baaVendors": [
                {"host": "old.vendor.example", "baaId": "BAA-2020-001", "expires": "2020-01-01"}
            ]}),
        );
        let d = decide(&outbound(), &to("anything.example"), &p, NOW);
        assert!(d.annotations.is_empty());
        assert_eq!(allowance(d).baa_id, None);
        let d = denial(decide(&outbound(), &to("old.vendor.example"), &p, NOW));
        assert_eq!(d.code(), "egress_baa_expired");
    }

    #[test]
    fn baa_dates() {
        let now = 1_795_392_000 + 3600;
        assert!(baa_in_force("2026-11-23", now));
        assert!(!baa_in_force("2026-11-22", now));
        assert!(!baa_in_force("not-a-date", now));
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(
            normalize_host("Example.COM:8443").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            normalize_host("[2001:DB8::1]:443").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(normalize_host("10.0.0.1:80").as_deref(), Some("10.0.0.1"));
        assert_eq!(normalize_host("[::1]x"), None);
        assert_eq!(normalize_host("[]:443"), None);
        assert_eq!(normalize_host("a:123456"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("::1"), None); // a bare IPv6 literal must be bracketed
    }

    #[test]
    fn every_denial_has_one_status_and_code() {
        let all = [
            Denial::PlaintextRefused,
            Denial::AttributeUnavailable { attribute: "x" },
            Denial::TlsVersionTooLow {
                version: "TLSv1".into(),
            },
            Denial::TlsVersionUnknown {
                version: "?".into(),
            },
            Denial::ClientCertificateRequired,
            Denial::PeerNotAllowed { peer: None },
            Denial::EgressHostMissing,
            Denial::EgressHostNotListed { host: "h".into() },
            Denial::EgressBaaExpired {
                host: "h".into(),
                baa_id: "b".into(),
                expires: "2020-01-01".into(),
            },
            Denial::RequestSignatureMissing,
            Denial::RequestSignatureInvalid,
            Denial::RequestBodyTooLarge,
            Denial::IntegrityKeyUnavailable,
            Denial::Unconfigured,
        ];
        assert_eq!(all.len(), Denial::CODES.len());
        for (i, d) in all.iter().enumerate() {
            assert_eq!(d.index(), i);
            assert!(d
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(matches!(d.status(), 403 | 413 | 503));
        }
        assert_eq!(Denial::RequestBodyTooLarge.status(), 413);
        assert_eq!(Denial::IntegrityKeyUnavailable.status(), 503);
    }

    #[test]
    fn request_verification_and_response_signing() {
        let keys = MacKeyRing::parse(&"ab".repeat(32)).unwrap();
        let good = integrity::sign(keys.current(), b"{}");
        assert_eq!(verify_request_body(Some(&keys), Some(&good), b"{}"), Ok(()));
        assert_eq!(
            verify_request_body(Some(&keys), Some(&good), b"{ }"),
            Err(Denial::RequestSignatureInvalid)
        );
        assert_eq!(
            verify_request_body(Some(&keys), Some("garbage"), b"{}"),
            Err(Denial::RequestSignatureInvalid)
        );
        assert_eq!(
            verify_request_body(Some(&keys), None, b"{}"),
            Err(Denial::RequestSignatureMissing)
        );
        assert_eq!(
            verify_request_body(None, Some(&good), b"{}"),
            Err(Denial::IntegrityKeyUnavailable)
        );
        // Responses are signed with the response key (Ed25519), never the request key.
        let response_key = integrity::ResponseSigningKey::from_seed("r1", &[5u8; 32]).unwrap();
        let mut signer = response_signer(Some(&response_key)).unwrap();
        signer.update(b"{");
        signer.update(b"}");
        let signed = signer.finish();
        assert_ne!(signed, good);
        let public =
            integrity::ResponseVerifyingKeys::parse(&response_key.public_key_text()).unwrap();
        assert_eq!(integrity::verify_response(&public, &signed, b"{}"), Ok(()));
        assert!(verify_request_body(Some(&keys), Some(&signed), b"{}").is_err());
        assert_eq!(
            response_signer(None).err(),
            Some(Denial::IntegrityKeyUnavailable)
        );
        assert_eq!(Denial::RequestSignatureMissing.status(), 403);
        assert_eq!(Denial::RequestSignatureInvalid.status(), 403);
    }

    #[test]
    fn denial_body_is_the_contract_json() {
        let body = Denial::PlaintextRefused.body("req-1");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "access_denied");
        assert_eq!(Denial::RequestBodyTooLarge.error(), "request_too_large");
        assert_eq!(Denial::Unconfigured.error(), "temporarily_unavailable");
        assert_eq!(v["request_id"], "req-1");
        assert!(v["error_description"].as_str().unwrap().contains("TLS"));
        assert_eq!(v.as_object().unwrap().len(), 3);
    }
}
