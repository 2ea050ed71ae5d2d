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
//!
//! One job per file: `inbound` (the transport rules), `egress` (the BAA vendor list),
//! `body` (the body plan, request verification, response signing), `denial` (the refusal
//! vocabulary). The types every part shares, and [`decide`], are here.

mod body;
mod denial;
mod egress;
mod inbound;
#[cfg(test)]
mod tests;

pub use body::{response_signer, verify_request_body, BodyPlan};
pub use denial::Denial;
pub use egress::{baa_in_force, baa_vendor, is_mesh_host, normalize_host};

use crate::policy::schema::TlsVersion;
use crate::policy::Policy;

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
        Direction::Outbound => egress::decide_egress(request.authority, policy, now_unix),
        Direction::Inbound => inbound::decide_inbound(facts, request, policy),
    }
}
