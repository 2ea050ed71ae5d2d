//! Why a transport request was refused: the reason codes, their status and their reply.

use crate::denial::LocalReply;

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

    /// The contract's local reply, the same shape as every hipaa-mesh refusal.
    pub fn reply(&self, request_id: &str) -> LocalReply {
        LocalReply::refusal(
            self.status(),
            self.error(),
            &self.description(),
            Some(self.code()),
            request_id,
        )
    }
}
