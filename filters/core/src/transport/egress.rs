//! Outbound requests (egress): the host must be a listed BAA vendor whose agreement is in
//! force, a mesh host, or (with the `unlisted-egress` exception) any host.

use super::{Allowance, BodyPlan, Decision, Denial, Direction, Verdict, HEADER_BAA};
use crate::calendar::Date;
use crate::policy::schema::{BaaVendor, Egress, UnlistedHosts};
use crate::policy::Policy;

pub(super) fn decide_egress(
    authority: Option<&str>,
    policy: &Policy,
    now_unix: Option<i64>,
) -> Decision {
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
