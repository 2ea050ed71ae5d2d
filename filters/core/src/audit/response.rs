//! Trust direction on the response side (THREATS.md "trust direction"): which reply headers the
//! audit filter may believe, and which it must remove before the client sees them.
//!
//! The `x-hipaa-*` names are the filters' own vocabulary. On the request side authn and audit
//! remove every one a client sent. On the response side only **Envoy's local replies** (a
//! hipaa filter's refusal, `send_http_response`) may carry them: a reply from the upstream —
//! the app, or a vendor on an outbound listener — that names `x-hipaa-denial` would otherwise
//! make an allowed access look denied in the trail, and its `x-hipaa-subject` would reach the
//! client as if the mesh had said it. Envoy tells the two apart in `response.code_details`:
//! `via_upstream` for an upstream's answer, a local detail otherwise.
//!
//! The audit filter runs first on the request, so last on the response: it removes every
//! `x-hipaa-*` header of an upstream's answer — on inbound and outbound listeners alike — except
//! `x-hipaa-signature` on a route whose responses transport signs (transport removed the
//! upstream's own and set the mesh's; DESIGN.md "Response signatures").

use crate::headers::is_reserved;

/// `response.code_details` of an answer that came from the upstream.
pub const VIA_UPSTREAM: &str = "via_upstream";

/// The response signature header transport sets.
pub const SIGNATURE: &str = crate::integrity::SIGNATURE_HEADER;

/// Whether Envoy itself answered: anything but `via_upstream`. Envoy's router sets
/// `via_upstream` before an upstream's headers reach any filter, while a filter's local reply
/// may carry no details yet when its headers pass the audit filter (seen in Envoy 1.40: the
/// property is unset there), so only `via_upstream` marks the side that may not be trusted.
pub fn is_local_reply(code_details: Option<&str>) -> bool {
    code_details.is_none_or(|d| d.trim() != VIA_UPSTREAM)
}

/// The reply's `x-hipaa-denial`, believed only from a local reply.
pub fn trusted_denial(denial: Option<String>, code_details: Option<&str>) -> Option<String> {
    denial.filter(|_| is_local_reply(code_details))
}

/// The response header names (lowercase) to remove before the client sees them: every
/// `x-hipaa-*` of an answer that is not a local reply, except the signature transport set on a
/// route whose responses it signs.
pub fn headers_to_remove(
    names: &[String],
    code_details: Option<&str>,
    route_signs: bool,
) -> Vec<String> {
    if is_local_reply(code_details) {
        return Vec::new();
    }
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| is_reserved(n))
        .map(|n| n.to_ascii_lowercase())
        .filter(|n| !(route_signs && n == SIGNATURE))
        .collect();
    out.dedup();
    out
}

/// Whether transport signs the responses of the route `method` `path` matches (its
/// `x-hipaa-signature` is the mesh's, not the upstream's).
pub fn route_signs(table: &crate::routes::RouteTable, method: &str, path: &str) -> bool {
    table
        .find(method, path)
        .route()
        .is_some_and(|r| r.sign_responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_local_replies_are_believed() {
        assert!(is_local_reply(Some("wasm_fail_stream")));
        assert!(is_local_reply(Some("direct_response")));
        assert!(!is_local_reply(Some("via_upstream")));
        assert!(
            is_local_reply(None),
            "a local reply may carry no details yet"
        );
        let d = Some("bad_signature".to_string());
        assert_eq!(trusted_denial(d.clone(), Some("via_upstream")), None);
        assert_eq!(trusted_denial(d.clone(), None), d);
        assert_eq!(trusted_denial(d.clone(), Some("wasm")), d);
    }

    #[test]
    fn every_upstream_hipaa_header_is_removed_but_a_signature_transport_set() {
        let all = names(&[
            ":status",
            "x-hipaa-denial",
            "X-Hipaa-Subject",
            "x-hipaa-signature",
            "content-type",
        ]);
        assert_eq!(
            headers_to_remove(&all, Some("via_upstream"), false),
            names(&["x-hipaa-denial", "x-hipaa-subject", "x-hipaa-signature"])
        );
        assert_eq!(
            headers_to_remove(&all, Some("via_upstream"), true),
            names(&["x-hipaa-denial", "x-hipaa-subject"])
        );
        // A hipaa filter's own refusal keeps its reason for the client.
        assert!(headers_to_remove(&all, Some("wasm"), false).is_empty());
    }
}
