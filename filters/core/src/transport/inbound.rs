//! Inbound requests: no plaintext, TLS at or above `minTlsVersion`, a client certificate when
//! `requireMtls`, a peer SPIFFE id in `allowedPeers` when that list is non-empty.

use super::{
    Allowance, BodyPlan, ConnectionFacts, Decision, Denial, Direction, ProtocolVersion,
    RequestLine, Verdict, HEADER_PEER, HEADER_TLS, WRITE_METHODS,
};
use crate::policy::Policy;
use crate::routes::RouteMatch;

pub(super) fn decide_inbound(
    facts: &ConnectionFacts,
    request: &RequestLine<'_>,
    policy: &Policy,
) -> Decision {
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
