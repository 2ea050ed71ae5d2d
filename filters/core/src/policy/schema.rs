//! The v1 `HipaaPolicy` document as written by platform engineers: serde structs only.
//!
//! Every struct denies unknown fields, so a misspelt key is an error rather than a silently
//! ignored safeguard. Defaults live here; cross-field rules live in `validate`.

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "hipaa-mesh/v1";
pub const KIND: &str = "HipaaPolicy";

/// The whole YAML document (the CLI's input). Filters receive only `spec`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub identity: Identity,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub unmatched_routes: UnmatchedRoutes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub egress: Egress,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
    /// Which workload the rendered Istio resources select (ignored by the filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
}

// ---------------------------------------------------------------- identity

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    pub providers: Vec<Provider>,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    #[serde(default)]
    pub shared_accounts: SharedAccounts,
    #[serde(default)]
    pub mfa: Mfa,
    #[serde(default)]
    pub session: Session,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// Verified tokens kept per worker VM, so a repeat token costs a lookup.
    #[serde(default = "default_token_cache_size")]
    pub token_cache_size: u32,
    /// Failed signature checks a worker VM pays for before it sheds new tokens (forged-token
    /// floods); tokens already verified and cached are never shed.
    #[serde(default, skip_serializing_if = "SignatureFailureBudget::is_default")]
    pub signature_failure_budget: SignatureFailureBudget,
}

/// A token bucket of failed signature checks, per worker VM. `perSecond: 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignatureFailureBudget {
    #[serde(default = "default_failures_per_second")]
    pub per_second: u32,
    #[serde(default = "default_failure_burst")]
    pub burst: u32,
}

impl Default for SignatureFailureBudget {
    fn default() -> Self {
        SignatureFailureBudget {
            per_second: default_failures_per_second(),
            burst: default_failure_burst(),
        }
    }
}

impl SignatureFailureBudget {
    pub fn is_default(&self) -> bool {
        *self == SignatureFailureBudget::default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_seconds: u64,
    /// Who checks the signature: authn itself (`wasm`) or Envoy's native `jwt_authn`
    /// in front of it (`envoy`), whose verified payload authn then requires.
    #[serde(default, skip_serializing_if = "Verification::is_wasm")]
    pub verification: Verification,
}

/// Where a provider's token signatures are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verification {
    /// In the authn VM, with the provider's JWKS (the default).
    #[default]
    Wasm,
    /// By Envoy's `jwt_authn` filter, placed before authn; authn requires its verified
    /// payload in the request's dynamic metadata and checks every other rule itself.
    Envoy,
}

impl Verification {
    pub fn is_wasm(&self) -> bool {
        *self == Verification::Wasm
    }

    pub fn name(self) -> &'static str {
        match self {
            Verification::Wasm => "wasm",
            Verification::Envoy => "envoy",
        }
    }
}

/// Either `inline` (a JWKS JSON text) or a remote set fetched through an Envoy cluster.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwksSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Asymmetric algorithms only (RFC 8725 3.1): `none` and HS* are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Exact, case-sensitive (RFC 7515 4.1.1): `rs256` is not `RS256`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SharedAccounts {
    #[serde(default)]
    pub deny_subjects: Vec<String>,
    #[serde(default)]
    pub deny_subject_prefixes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mfa {
    #[serde(default = "default_mfa_roles")]
    pub required_for_roles: Vec<String>,
    #[serde(default = "default_accepted_amr")]
    pub accepted_amr: Vec<String>,
}

impl Default for Mfa {
    fn default() -> Self {
        Mfa {
            required_for_roles: default_mfa_roles(),
            accepted_amr: default_accepted_amr(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Session {
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "default_absolute_timeout")]
    pub absolute_timeout_seconds: u64,
    #[serde(default = "default_session_claim")]
    pub session_claim: String,
    /// Sessions tracked per Envoy for the idle timeout (bounded shared memory).
    #[serde(default = "default_max_tracked_sessions")]
    pub max_tracked: u32,
    /// A token on a PHI route must carry `auth_time` (the absolute timeout counts from the
    /// sign-in; `iat` is renewed by every token refresh, so it cannot end a session). `false`
    /// falls back to `iat` (an IdP that omits `auth_time`): `policy report` flags it.
    #[serde(default = "default_true")]
    pub require_auth_time: bool,
    /// The mesh-wide session authority (the collector cluster): one idle clock for every replica
    /// and the revocation list. Absent: the idle clock is per Envoy, nothing can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<SessionAuthority>,
}

/// `identity.session.authority`: where authn asks when its local view cannot decide (first
/// sight of a session, or locally idle past the timeout) and pulls revocations from. The wire
/// contract is `crate::authn::authority` (DESIGN.md, sessions across replicas).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionAuthority {
    /// The Envoy cluster of the collector (usually the audit collector's).
    pub cluster: String,
    /// `:authority` of the calls (default: the cluster name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// How long a paused request waits for the authority's answer.
    #[serde(default = "default_authority_timeout")]
    pub timeout_ms: u64,
    /// What an unanswered check decides: `local` (the per-Envoy view, as without an authority)
    /// or `deny` (503 `session_authority_unavailable`).
    #[serde(default)]
    pub on_unavailable: OnAuthorityUnavailable,
    /// How often the revocation list is pulled (conditional GET); revocations take effect within
    /// this plus one round trip.
    #[serde(default = "default_revocations_refresh")]
    pub revocations_refresh_ms: u64,
    /// The variable holding the request/answer MAC key (one key per purpose).
    #[serde(default = "default_authority_key_env")]
    pub key_env: String,
}

/// `identity.session.authority.onUnavailable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OnAuthorityUnavailable {
    /// Decide as a lone Envoy would: a first-seen session passes, a locally idle one is refused.
    #[default]
    Local,
    /// Refuse the request the authority was needed for (503, `Retry-After: 1`).
    Deny,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            idle_timeout_seconds: default_idle_timeout(),
            absolute_timeout_seconds: default_absolute_timeout(),
            session_claim: default_session_claim(),
            max_tracked: default_max_tracked_sessions(),
            require_auth_time: true,
            authority: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakGlass {
    #[serde(default = "default_break_glass_header")]
    pub header: String,
    pub reason_codes: Vec<String>,
    pub eligible_roles: Vec<String>,
}

// ---------------------------------------------------------------- routes

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub phi: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_from: Option<PatientFrom>,
    #[serde(default)]
    pub soft_delete_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<Inference>,
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Sign response bodies (HMAC-SHA256) even without `inference`.
    #[serde(default)]
    pub sign_responses: bool,
    /// Require a valid body signature on write requests.
    #[serde(default)]
    pub verify_requests: bool,
    /// Accept `;` path parameters (`/a;v=1/b`, matched as `/a/b`). Off: such a path is a 400.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_path_parameters: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatientFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inference {
    pub model_header: String,
    pub version_header: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UnmatchedRoutes {
    /// Authenticate and audit as PHI: any verified identity may use a path no route names.
    Phi,
    /// Refuse with 403 (the default: least privilege).
    #[default]
    Deny,
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Audit {
    pub collector: Collector,
    #[serde(default = "default_flush_interval")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
    #[serde(default = "default_max_buffered")]
    pub max_buffered: u32,
    #[serde(default)]
    pub when_collector_down: WhenCollectorDown,
    #[serde(default = "default_mac_key_env")]
    pub mac_key_env: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Collector {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default = "default_collector_path")]
    pub path: String,
    #[serde(default = "default_collector_timeout")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WhenCollectorDown {
    #[default]
    FailClosed,
    FailOpen,
}

// ---------------------------------------------------------------- transport and egress

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Transport {
    #[serde(default)]
    pub min_tls_version: TlsVersion,
    #[serde(default = "default_true")]
    pub require_mtls: bool,
    #[serde(default)]
    pub allowed_peers: Vec<String>,
    /// Largest request or response body buffered for integrity checks.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u32,
    /// Where the body-signature keys come from (one key per purpose).
    #[serde(default, skip_serializing_if = "TransportIntegrity::is_default")]
    pub integrity: TransportIntegrity,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            min_tls_version: TlsVersion::default(),
            require_mtls: true,
            allowed_peers: Vec::new(),
            max_body_bytes: default_max_body_bytes(),
            integrity: TransportIntegrity::default(),
        }
    }
}

/// The environment variables holding the body-signature keys, each of its own purpose: never
/// the audit MAC key's variable, never each other's (see `integrity`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransportIntegrity {
    /// HMAC key(s) for `verifyRequests` bodies, held by the signing clients.
    #[serde(default = "default_request_key_env")]
    pub request_key_env: String,
    /// Ed25519 private key for response signatures, held only by this workload's sidecar.
    #[serde(default = "default_response_key_env")]
    pub response_key_env: String,
}

impl Default for TransportIntegrity {
    fn default() -> Self {
        TransportIntegrity {
            request_key_env: default_request_key_env(),
            response_key_env: default_response_key_env(),
        }
    }
}

impl TransportIntegrity {
    pub fn is_default(&self) -> bool {
        *self == TransportIntegrity::default()
    }
}

/// Only TLS 1.2 and 1.3 are representable: a lower minimum is a policy error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Egress {
    #[serde(default)]
    pub baa_vendors: Vec<BaaVendor>,
    /// Hosts inside the mesh the workload may call on its outbound side: exact names, or
    /// `*.SUFFIX` (e.g. `*.svc.cluster.local`). Such calls never leave the mesh (STRICT mTLS),
    /// so they need no BAA; they are still audited. Empty by default: nothing is implied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mesh_hosts: Vec<String>,
    #[serde(default)]
    pub unlisted_hosts: UnlistedHosts,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BaaVendor {
    pub host: String,
    pub baa_id: String,
    /// UTC date `YYYY-MM-DD`; the BAA is valid through that day.
    pub expires: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UnlistedHosts {
    #[default]
    Deny,
    Allow,
}

// ---------------------------------------------------------------- exceptions

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exception {
    pub safeguard: Safeguard,
    pub justification: String,
}

/// Safeguards that a policy may switch off, each only with a written justification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Safeguard {
    /// 164.312(a)(2)(iii): session idle timeout off (`idleTimeoutSeconds: 0`).
    AutomaticLogoff,
    /// 164.312(b): `whenCollectorDown: failOpen`.
    AuditDelivery,
    /// 164.312(c)(1): soft-delete / signing relaxed.
    Integrity,
    /// 164.312(e)(1): `egress.unlistedHosts: allow`.
    UnlistedEgress,
}

impl Safeguard {
    pub fn name(self) -> &'static str {
        match self {
            Safeguard::AutomaticLogoff => "automatic-logoff",
            Safeguard::AuditDelivery => "audit-delivery",
            Safeguard::Integrity => "integrity",
            Safeguard::UnlistedEgress => "unlisted-egress",
        }
    }
}

// ---------------------------------------------------------------- defaults

fn default_namespace() -> String {
    "default".into()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_token_cache_size() -> u32 {
    4096
}
// An RS256 check costs ~2 ms of a worker in V8: 20 failures a second is at most ~4% of a core.
fn default_failures_per_second() -> u32 {
    20
}
fn default_failure_burst() -> u32 {
    40
}
fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
}
fn default_clock_skew() -> u64 {
    30
}
fn default_max_token_lifetime() -> u64 {
    3600
}
fn default_mfa_roles() -> Vec<String> {
    vec!["clinician".into(), "admin".into()]
}
fn default_accepted_amr() -> Vec<String> {
    ["mfa", "otp", "hwk", "swk", "sc", "fpt", "face"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_idle_timeout() -> u64 {
    900
}
fn default_absolute_timeout() -> u64 {
    43_200
}
fn default_session_claim() -> String {
    "sid".into()
}
fn default_max_tracked_sessions() -> u32 {
    65_536
}
fn default_authority_timeout() -> u64 {
    250
}
fn default_revocations_refresh() -> u64 {
    2000
}
pub(crate) fn default_authority_key_env() -> String {
    "HIPAA_SESSION_AUTHORITY_KEY".into()
}
fn default_break_glass_header() -> String {
    "x-break-glass".into()
}
fn default_flush_interval() -> u64 {
    1000
}
fn default_max_batch() -> u32 {
    200
}
fn default_max_buffered() -> u32 {
    20_000
}
fn default_mac_key_env() -> String {
    "HIPAA_AUDIT_HMAC_KEY".into()
}
fn default_request_key_env() -> String {
    "HIPAA_REQUEST_SIGNING_KEY".into()
}
fn default_response_key_env() -> String {
    "HIPAA_RESPONSE_SIGNING_KEY".into()
}
fn default_collector_path() -> String {
    "/v1/records".into()
}
fn default_collector_timeout() -> u64 {
    2000
}
fn default_true() -> bool {
    true
}
fn default_max_body_bytes() -> u32 {
    1024 * 1024
}
