//! Cross-field rules of the v1 policy: what serde's types cannot say on their own.
//! Every rule pushes an error naming its key path and never stops early.

use super::errors::PolicyErrors;
use super::schema::*;
use crate::calendar::Date;
use std::collections::HashSet;

pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;
pub const MAX_TOKEN_LIFETIME_SECONDS: u64 = 86_400;
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

pub fn validate_document(doc: &PolicyDocument, errors: &mut PolicyErrors) {
    if doc.api_version != API_VERSION {
        errors.push(
            "apiVersion",
            format!(
                "`{}` is not supported; expected `{API_VERSION}`",
                doc.api_version
            ),
        );
    }
    if doc.kind != KIND {
        errors.push(
            "kind",
            format!("`{}` is not supported; expected `{KIND}`", doc.kind),
        );
    }
    if !is_dns_label(&doc.metadata.name) {
        errors.push(
            "metadata.name",
            "must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit",
        );
    }
    if !is_dns_label(&doc.metadata.namespace) {
        errors.push("metadata.namespace", "must be a DNS label");
    }
    validate_spec(&doc.spec, errors);
}

pub fn validate_spec(spec: &Spec, errors: &mut PolicyErrors) {
    let excepted: HashSet<Safeguard> = spec.exceptions.iter().map(|e| e.safeguard).collect();
    validate_identity(&spec.identity, &excepted, errors);
    validate_routes(&spec.routes, errors);
    if let Some(audit) = &spec.audit {
        validate_audit(audit, &excepted, errors);
    }
    validate_transport(&spec.transport, errors);
    validate_key_purposes(spec, errors);
    if let Some(a) = &spec.identity.session.authority {
        validate_session_authority(spec, a, errors);
    }
    validate_egress(&spec.egress, &excepted, errors);
    validate_exceptions(&spec.exceptions, errors);
}

fn validate_identity(id: &Identity, excepted: &HashSet<Safeguard>, errors: &mut PolicyErrors) {
    let p = "spec.identity";
    if id.providers.is_empty() {
        errors.push(
            format!("{p}.providers"),
            "at least one identity provider is required",
        );
    }
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, prov) in id.providers.iter().enumerate() {
        let pp = format!("{p}.providers[{i}]");
        if prov.name.trim().is_empty() {
            errors.push(format!("{pp}.name"), "must not be empty");
        } else if !names.insert(prov.name.as_str()) {
            errors.push(
                format!("{pp}.name"),
                format!("duplicate provider name `{}`", prov.name),
            );
        }
        if prov.issuer.trim().is_empty() {
            errors.push(format!("{pp}.issuer"), "must not be empty");
        } else if !issuers.insert(prov.issuer.as_str()) {
            errors.push(
                format!("{pp}.issuer"),
                format!(
                    "issuer `{}` is already used by another provider",
                    prov.issuer
                ),
            );
        }
        if prov.audiences.is_empty() {
            errors.push(
                format!("{pp}.audiences"),
                "at least one audience is required",
            );
        }
        for (j, aud) in prov.audiences.iter().enumerate() {
            if aud.trim().is_empty() {
                errors.push(format!("{pp}.audiences[{j}]"), "must not be empty");
            }
        }
        validate_jwks(&prov.jwks, &prov.algorithms, &format!("{pp}.jwks"), errors);
        if prov.algorithms.is_empty() {
            errors.push(
                format!("{pp}.algorithms"),
                "must list at least one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
            );
        }
        let mut seen = HashSet::new();
        for (j, alg) in prov.algorithms.iter().enumerate() {
            if !seen.insert(*alg) {
                errors.push(
                    format!("{pp}.algorithms[{j}]"),
                    format!("duplicate `{}`", alg.name()),
                );
            }
        }
        if prov.clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
            errors.push(
                format!("{pp}.clockSkewSeconds"),
                format!(
                    "{} is above the maximum of {MAX_CLOCK_SKEW_SECONDS}",
                    prov.clock_skew_seconds
                ),
            );
        }
        if prov.max_token_lifetime_seconds == 0
            || prov.max_token_lifetime_seconds > MAX_TOKEN_LIFETIME_SECONDS
        {
            errors.push(
                format!("{pp}.maxTokenLifetimeSeconds"),
                format!(
                    "must be between 1 and {MAX_TOKEN_LIFETIME_SECONDS} (short-lived tokens), got {}",
                    prov.max_token_lifetime_seconds
                ),
            );
        }
    }
    if id.subject_claim.trim().is_empty() {
        errors.push(format!("{p}.subjectClaim"), "must not be empty");
    }
    if id.roles_claim.trim().is_empty() {
        errors.push(format!("{p}.rolesClaim"), "must not be empty");
    }
    for (i, s) in id.shared_accounts.deny_subject_prefixes.iter().enumerate() {
        if s.is_empty() {
            errors.push(
                format!("{p}.sharedAccounts.denySubjectPrefixes[{i}]"),
                "an empty prefix would refuse every subject",
            );
        }
    }
    if !id.mfa.required_for_roles.is_empty() && id.mfa.accepted_amr.is_empty() {
        errors.push(
            format!("{p}.mfa.acceptedAmr"),
            "must list at least one RFC 8176 `amr` value when requiredForRoles is set",
        );
    }
    let s = &id.session;
    if s.idle_timeout_seconds == 0 && !excepted.contains(&Safeguard::AutomaticLogoff) {
        errors.push(
            format!("{p}.session.idleTimeoutSeconds"),
            "0 switches automatic logoff off; that needs an `exceptions` entry for `automatic-logoff` with a justification",
        );
    }
    if s.absolute_timeout_seconds == 0 {
        errors.push(
            format!("{p}.session.absoluteTimeoutSeconds"),
            "must be above 0",
        );
    } else if s.idle_timeout_seconds > s.absolute_timeout_seconds {
        errors.push(
            format!("{p}.session.idleTimeoutSeconds"),
            "must not exceed absoluteTimeoutSeconds",
        );
    }
    if s.session_claim.trim().is_empty() {
        errors.push(format!("{p}.session.sessionClaim"), "must not be empty");
    }
    if s.max_tracked == 0 || s.max_tracked > 1 << 20 {
        errors.push(
            format!("{p}.session.maxTracked"),
            format!("must be between 1 and {}", 1 << 20),
        );
    }
    if id.token_cache_size > 1 << 18 {
        errors.push(
            format!("{p}.tokenCacheSize"),
            format!("must be between 0 (off) and {}", 1 << 18),
        );
    }
    let budget = &id.signature_failure_budget;
    if budget.per_second > 100_000 {
        errors.push(
            format!("{p}.signatureFailureBudget.perSecond"),
            "must be between 0 (off) and 100000",
        );
    }
    if budget.per_second > 0 && (budget.burst == 0 || budget.burst > 1_000_000) {
        errors.push(
            format!("{p}.signatureFailureBudget.burst"),
            "must be between 1 and 1000000 while perSecond is above 0",
        );
    }
    if let Some(bg) = &id.break_glass {
        if !is_header_name(&bg.header) {
            errors.push(
                format!("{p}.breakGlass.header"),
                "must be a lowercase HTTP header name",
            );
        } else if bg.header.starts_with("x-hipaa-") {
            errors.push(
                format!("{p}.breakGlass.header"),
                "x-hipaa-* headers are reserved for the filters",
            );
        }
        if bg.reason_codes.is_empty() || bg.reason_codes.iter().any(|r| r.trim().is_empty()) {
            errors.push(
                format!("{p}.breakGlass.reasonCodes"),
                "must list at least one non-empty reason code",
            );
        }
        if bg.eligible_roles.is_empty() {
            errors.push(
                format!("{p}.breakGlass.eligibleRoles"),
                "must list at least one role",
            );
        }
    }
}

fn validate_jwks(jwks: &JwksSource, algs: &[Algorithm], p: &str, errors: &mut PolicyErrors) {
    match (&jwks.inline, &jwks.cluster) {
        (Some(_), Some(_)) => errors.push(p, "set either `inline` or `cluster`, not both"),
        (None, None) => errors.push(p, "set `inline` (a JWKS JSON text) or `cluster` and `path`"),
        (Some(text), None) => {
            for key in ["path", "authority", "refreshSeconds", "timeoutMs"] {
                let set = match key {
                    "path" => jwks.path.is_some(),
                    "authority" => jwks.authority.is_some(),
                    "refreshSeconds" => jwks.refresh_seconds.is_some(),
                    _ => jwks.timeout_ms.is_some(),
                };
                if set {
                    errors.push(
                        format!("{p}.{key}"),
                        "applies only to a remote `cluster` JWKS",
                    );
                }
            }
            if let Err(e) = crate::jwt::KeySet::from_jwks_json(text, algs) {
                errors.push(format!("{p}.inline"), e.to_string());
            }
        }
        (None, Some(cluster)) => {
            if cluster.trim().is_empty() {
                errors.push(format!("{p}.cluster"), "must not be empty");
            }
            match &jwks.path {
                Some(path) if path.starts_with('/') => {}
                _ => errors.push(
                    format!("{p}.path"),
                    "is required with `cluster` and must start with '/'",
                ),
            }
            if let Some(r) = jwks.refresh_seconds {
                if !(10..=86_400).contains(&r) {
                    errors.push(
                        format!("{p}.refreshSeconds"),
                        "must be between 10 and 86400",
                    );
                }
            }
            if let Some(t) = jwks.timeout_ms {
                if !(1..=60_000).contains(&t) {
                    errors.push(format!("{p}.timeoutMs"), "must be between 1 and 60000");
                }
            }
        }
    }
}

fn validate_routes(routes: &[Route], errors: &mut PolicyErrors) {
    let mut names = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        let p = format!("spec.routes[{i}]");
        if r.name.trim().is_empty() {
            errors.push(format!("{p}.name"), "must not be empty");
        } else if !names.insert(r.name.as_str()) {
            errors.push(
                format!("{p}.name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        let m = &r.matcher;
        match (&m.path, &m.path_prefix) {
            (Some(_), Some(_)) => {
                errors.push(format!("{p}.match"), "set `path` or `pathPrefix`, not both")
            }
            (None, None) => errors.push(format!("{p}.match"), "set `path` (exact) or `pathPrefix`"),
            (Some(path), None) | (None, Some(path)) if !path.starts_with('/') => {
                let key = if m.path.is_some() {
                    "path"
                } else {
                    "pathPrefix"
                };
                errors.push(format!("{p}.match.{key}"), "must start with '/'");
            }
            _ => {}
        }
        for (j, method) in m.methods.iter().enumerate() {
            if !METHODS.contains(&method.as_str()) {
                errors.push(
                    format!("{p}.match.methods[{j}]"),
                    format!("`{method}` is not one of {}", METHODS.join(", ")),
                );
            }
        }
        if r.public && r.phi {
            errors.push(
                format!("{p}.public"),
                "a route cannot be both `public` and `phi`",
            );
        }
        if r.public {
            for (key, set) in [
                ("allowRoles", !r.allow_roles.is_empty()),
                ("patientFrom", r.patient_from.is_some()),
                ("inference", r.inference.is_some()),
                ("verifyRequests", r.verify_requests),
            ] {
                if set {
                    errors.push(
                        format!("{p}.{key}"),
                        "has no effect on a `public` route (no identity, no audit)",
                    );
                }
            }
        }
        if r.allow_plaintext && !r.public {
            errors.push(
                format!("{p}.allowPlaintext"),
                "only a `public: true` route (e.g. a kubelet probe) may allow plaintext",
            );
        }
        if r.inference.is_some() && !r.phi {
            errors.push(
                format!("{p}.inference"),
                "inference routes carry PHI: set `phi: true`",
            );
        }
        if let Some(inf) = &r.inference {
            for (key, h) in [
                ("modelHeader", &inf.model_header),
                ("versionHeader", &inf.version_header),
            ] {
                if !is_header_name(h) {
                    errors.push(
                        format!("{p}.inference.{key}"),
                        "must be a lowercase HTTP header name",
                    );
                }
            }
        }
        if let Some(pf) = &r.patient_from {
            validate_patient_from(pf, &format!("{p}.patientFrom"), errors);
        }
    }
}

fn validate_patient_from(pf: &PatientFrom, p: &str, errors: &mut PolicyErrors) {
    let set = [
        pf.path_template.is_some(),
        pf.header.is_some(),
        pf.query.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        errors.push(p, "set exactly one of `pathTemplate`, `header`, `query`");
    }
    if let Some(t) = &pf.path_template {
        if crate::routes::PatientSource::from_template(t).is_none() {
            errors.push(
                format!("{p}.pathTemplate"),
                "must start with '/' and contain `{patient}` as one whole path segment, once",
            );
        }
    }
    if let Some(h) = &pf.header {
        if !is_header_name(h) {
            errors.push(
                format!("{p}.header"),
                "must be a lowercase HTTP header name",
            );
        }
    }
    if let Some(q) = &pf.query {
        if q.is_empty() {
            errors.push(format!("{p}.query"), "must not be empty");
        }
    }
}

fn validate_audit(a: &Audit, excepted: &HashSet<Safeguard>, errors: &mut PolicyErrors) {
    let p = "spec.audit";
    if a.collector.cluster.trim().is_empty() {
        errors.push(format!("{p}.collector.cluster"), "must not be empty");
    }
    if !a.collector.path.starts_with('/') {
        errors.push(format!("{p}.collector.path"), "must start with '/'");
    }
    if !(1..=60_000).contains(&a.collector.timeout_ms) {
        errors.push(
            format!("{p}.collector.timeoutMs"),
            "must be between 1 and 60000 (0 would mean no timeout)",
        );
    }
    if !(10..=60_000).contains(&a.flush_interval_ms) {
        errors.push(
            format!("{p}.flushIntervalMs"),
            "must be between 10 and 60000",
        );
    }
    if !(1..=10_000).contains(&a.max_batch) {
        errors.push(format!("{p}.maxBatch"), "must be between 1 and 10000");
    }
    if a.max_buffered == 0 || a.max_buffered < a.max_batch || a.max_buffered > 1_000_000 {
        errors.push(
            format!("{p}.maxBuffered"),
            "must be at least maxBatch and at most 1000000",
        );
    }
    if a.when_collector_down == WhenCollectorDown::FailOpen
        && !excepted.contains(&Safeguard::AuditDelivery)
    {
        errors.push(
            format!("{p}.whenCollectorDown"),
            "`failOpen` needs an `exceptions` entry for `audit-delivery` (audit controls are Required); the default is `failClosed`",
        );
    }
    if !is_env_name(&a.mac_key_env) {
        errors.push(
            format!("{p}.macKeyEnv"),
            "must be an environment variable name ([A-Z_][A-Z0-9_]*)",
        );
    }
}

fn validate_transport(t: &Transport, errors: &mut PolicyErrors) {
    for (i, peer) in t.allowed_peers.iter().enumerate() {
        let ok = peer
            .strip_prefix("spiffe://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !ok {
            errors.push(
                format!("spec.transport.allowedPeers[{i}]"),
                format!("`{peer}` is not a SPIFFE id (spiffe://trust-domain/path)"),
            );
        }
    }
    if t.max_body_bytes == 0 || t.max_body_bytes > 16 * 1024 * 1024 {
        errors.push(
            "spec.transport.maxBodyBytes",
            "must be between 1 and 16777216",
        );
    }
}

/// One key, one purpose (issue #13): the audit MAC key, the request-body key and the response
/// key come from three different variables, so no configuration can make one key serve two.
fn validate_key_purposes(spec: &Spec, errors: &mut PolicyErrors) {
    let i = &spec.transport.integrity;
    let p = "spec.transport.integrity";
    for (key, name) in [
        ("requestKeyEnv", &i.request_key_env),
        ("responseKeyEnv", &i.response_key_env),
    ] {
        if !is_env_name(name) {
            errors.push(
                format!("{p}.{key}"),
                "must be an environment variable name ([A-Z_][A-Z0-9_]*)",
            );
        }
    }
    let audit_env = spec
        .audit
        .as_ref()
        .map_or("HIPAA_AUDIT_HMAC_KEY", |a| a.mac_key_env.as_str());
    for (key, name) in [
        ("requestKeyEnv", &i.request_key_env),
        ("responseKeyEnv", &i.response_key_env),
    ] {
        if name == audit_env {
            errors.push(
                format!("{p}.{key}"),
                format!("`{name}` is the audit MAC key's variable: body signatures need a key of their own (whoever holds a body key could seal audit records)"),
            );
        }
    }
    if i.request_key_env == i.response_key_env {
        errors.push(
            format!("{p}.responseKeyEnv"),
            "must differ from requestKeyEnv: the response key is an Ed25519 private key held only by this workload, the request key an HMAC key its clients hold",
        );
    }
}

/// `identity.session.authority`: a bounded call (a paused request waits at most `timeoutMs`),
/// revocations learnt within 5 s, and a key of its own.
fn validate_session_authority(spec: &Spec, a: &SessionAuthority, errors: &mut PolicyErrors) {
    let p = "spec.identity.session.authority";
    if a.cluster.trim().is_empty() {
        errors.push(format!("{p}.cluster"), "must not be empty");
    }
    if a.authority.as_deref().is_some_and(|h| h.trim().is_empty()) {
        errors.push(format!("{p}.authority"), "must not be empty when set");
    }
    if !(1..=5_000).contains(&a.timeout_ms) {
        errors.push(
            format!("{p}.timeoutMs"),
            "must be between 1 and 5000 (a request waits this long for the answer)",
        );
    }
    if !(100..=4_000).contains(&a.revocations_refresh_ms) {
        errors.push(
            format!("{p}.revocationsRefreshMs"),
            "must be between 100 and 4000 (a revocation must take effect within 5 seconds)",
        );
    }
    if !is_env_name(&a.key_env) {
        errors.push(
            format!("{p}.keyEnv"),
            "must be an environment variable name ([A-Z_][A-Z0-9_]*)",
        );
    }
    let audit_env = spec
        .audit
        .as_ref()
        .map_or("HIPAA_AUDIT_HMAC_KEY", |a| a.mac_key_env.as_str());
    let i = &spec.transport.integrity;
    if [audit_env, &i.request_key_env, &i.response_key_env].contains(&a.key_env.as_str()) {
        errors.push(
            format!("{p}.keyEnv"),
            format!("`{}` already holds another purpose's key (audit MAC or body signatures): the session authority needs a key of its own", a.key_env),
        );
    }
}

fn validate_egress(e: &Egress, excepted: &HashSet<Safeguard>, errors: &mut PolicyErrors) {
    let mut hosts = HashSet::new();
    for (i, v) in e.baa_vendors.iter().enumerate() {
        let p = format!("spec.egress.baaVendors[{i}]");
        let host = v.host.to_ascii_lowercase();
        if host.is_empty() || host.contains("://") || host.contains('/') || host.contains(':') {
            errors.push(
                format!("{p}.host"),
                "must be a bare host name (no scheme, port or path)",
            );
        } else if !hosts.insert(host) {
            errors.push(
                format!("{p}.host"),
                format!("duplicate vendor host `{}`", v.host),
            );
        }
        if v.baa_id.trim().is_empty() {
            errors.push(
                format!("{p}.baaId"),
                "must name the Business Associate Agreement",
            );
        }
        if Date::parse(&v.expires).is_none() {
            errors.push(
                format!("{p}.expires"),
                format!("`{}` is not a date (YYYY-MM-DD)", v.expires),
            );
        }
    }
    for (i, h) in e.mesh_hosts.iter().enumerate() {
        if let Some(problem) = mesh_host_problem(h) {
            errors.push(format!("spec.egress.meshHosts[{i}]"), problem);
        } else if hosts.contains(&h.to_ascii_lowercase()) {
            errors.push(
                format!("spec.egress.meshHosts[{i}]"),
                format!("`{h}` is also a BAA vendor: list it in one place"),
            );
        }
    }
    if e.unlisted_hosts == UnlistedHosts::Allow && !excepted.contains(&Safeguard::UnlistedEgress) {
        errors.push(
            "spec.egress.unlistedHosts",
            "`allow` needs an `exceptions` entry for `unlisted-egress`; the default is `deny`",
        );
    }
}

/// A mesh host is an exact host name or `*.` and a suffix of at least two labels, so that no
/// pattern can cover a public top-level domain (`*.com`) or everything (`*`).
fn mesh_host_problem(host: &str) -> Option<String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let labels_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok {
        return Some(format!(
            "`{host}` must be a host name, or `*.` and a domain (e.g. `*.svc.cluster.local`); no scheme, port or path"
        ));
    }
    if host.starts_with("*.") && name.split('.').count() < 2 {
        return Some(format!(
            "`{host}` is too broad: a wildcard needs a suffix of two or more labels (e.g. `*.svc.cluster.local`)"
        ));
    }
    None
}

fn validate_exceptions(exceptions: &[Exception], errors: &mut PolicyErrors) {
    let mut seen = HashSet::new();
    for (i, e) in exceptions.iter().enumerate() {
        let p = format!("spec.exceptions[{i}]");
        if e.justification.trim().len() < 10 {
            errors.push(
                format!("{p}.justification"),
                "must say why the safeguard is off (at least 10 characters)",
            );
        }
        if !seen.insert(e.safeguard) {
            errors.push(
                format!("{p}.safeguard"),
                format!("duplicate exception for `{}`", e.safeguard.name()),
            );
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(c) if c.is_ascii_uppercase() || c == b'_')
        && bytes.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}
