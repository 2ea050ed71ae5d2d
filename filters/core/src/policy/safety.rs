//! The safety rules of a policy: what `hipaa-mesh policy check` adds on top of validation.
//!
//! `validate` says whether the filters can run a policy; this module says whether a policy
//! leaves a Required safeguard of 45 CFR 164.312 switched off. The two are kept apart on
//! purpose: a filter given a valid but unsafe policy still enforces exactly what it says
//! (changing that would change what Envoy accepts), while `policy check` refuses it before
//! it reaches a cluster. A filter may call [`safety_errors`] too, to log what is missing.
//!
//! Already enforced by validation (and therefore not repeated here): `failOpen` without an
//! `audit-delivery` exception, an idle timeout of 0 without an `automatic-logoff` exception,
//! `unlistedHosts: allow` without an `unlisted-egress` exception, clock skew above 300 s,
//! token lifetimes above a day, `allowPlaintext` on a non-public route, a route both
//! `public` and `phi`, and exceptions without a justification.
//!
//! True by construction (documented, nothing to check):
//! - **Authentication on every PHI route** (164.312(d)): a route is `public` (no identity) or
//!   it is authenticated; a route cannot be both `public` and `phi`, and `unmatchedRoutes`
//!   is `phi` or `deny`, never public. So every PHI route, and every path no route names,
//!   requires a verified token.
//! - **A unique user id on every PHI request** (164.312(a)(2)(i)): the subject claim is
//!   required in every token; a token without it is refused.
//! - **TLS 1.2 or later** (164.312(e)(1)): `minTlsVersion` cannot name anything lower.
//!
//! Checked here, each as an error with its key path:
//! - `spec.audit` present: audit controls (164.312(b)) are Required, and without the section
//!   no PHI route is audited.
//! - `spec.identity.breakGlass` present: emergency access (164.312(a)(2)(ii)) is Required.
//! - `spec.identity.sharedAccounts` lists at least one subject or prefix: unique user
//!   identification means refusing the generic accounts an IdP has.
//! - `spec.transport.requireMtls: true`: transmission security (164.312(e)(1)) is Required
//!   and the v1 schema has no exception for it, so mTLS cannot be switched off.
//! - No `public` route matches a path a PHI route matches (in either order: a public route
//!   before a PHI route shadows it; one after it makes the same paths public by another name).
//! - With `unmatchedRoutes: phi`, no PHI prefix leaves its bare collection path unmatched:
//!   `pathPrefix: /fhir/Patient/` does not cover `GET /fhir/Patient?name=smith` (a patient
//!   search), which `phi` would hand to any verified identity, without the route's roles.
//!
//! Warnings (`policy check` prints them and still succeeds), from [`safety_warnings`]:
//! - With `unmatchedRoutes: deny` (the default), the same bare collection paths are refused:
//!   said, so that a search the application serves gets its route.

use super::errors::PolicyErrors;
use super::schema::*;

/// Every safety rule the policy breaks, in document order. Empty when the policy is safe.
pub fn safety_errors(spec: &Spec) -> PolicyErrors {
    let mut errors = PolicyErrors::default();
    if spec.audit.is_none() {
        errors.push(
            "spec.audit",
            "is required: audit controls (164.312(b)) are a Required safeguard, and without this section no PHI route is audited",
        );
    }
    if spec.identity.break_glass.is_none() {
        errors.push(
            "spec.identity.breakGlass",
            "is required: emergency access (164.312(a)(2)(ii)) is a Required safeguard; set `reasonCodes` and `eligibleRoles`",
        );
    }
    let shared = &spec.identity.shared_accounts;
    if shared.deny_subjects.is_empty() && shared.deny_subject_prefixes.is_empty() {
        errors.push(
            "spec.identity.sharedAccounts",
            "must list the shared or generic accounts to refuse (`denySubjects` or `denySubjectPrefixes`): unique user identification (164.312(a)(2)(i)) is Required",
        );
    }
    if !spec.transport.require_mtls {
        errors.push(
            "spec.transport.requireMtls",
            "`false` switches mTLS off inside the mesh; transmission security (164.312(e)(1)) is Required and has no exception",
        );
    }
    public_routes_overlapping_phi(&spec.routes, &mut errors);
    if spec.unmatched_routes == UnmatchedRoutes::Phi {
        for (i, route, bare) in unmatched_collection_paths(spec) {
            errors.push(
                format!("spec.routes[{i}].match.pathPrefix"),
                format!(
                    "PHI route `{}` does not cover its collection path `{bare}` (a search such as `GET {bare}?name=...`), which `unmatchedRoutes: phi` opens to any verified identity without the route's `allowRoles`; add a route for `{bare}` or set `unmatchedRoutes: deny`",
                    route.name
                ),
            );
        }
    }
    errors
}

/// What `policy check` says without failing: today, the bare collection paths that
/// `unmatchedRoutes: deny` refuses.
pub fn safety_warnings(spec: &Spec) -> PolicyErrors {
    let mut warnings = PolicyErrors::default();
    if spec.unmatched_routes == UnmatchedRoutes::Deny {
        for (i, route, bare) in unmatched_collection_paths(spec) {
            warnings.push(
                format!("spec.routes[{i}].match.pathPrefix"),
                format!(
                    "PHI route `{}` does not cover its collection path `{bare}`: `unmatchedRoutes: deny` refuses it (403), searches such as `GET {bare}?name=...` included; add a route for `{bare}` if the application serves it",
                    route.name
                ),
            );
        }
    }
    warnings
}

/// The PHI routes whose `pathPrefix` ends in `/` while no route covers the prefix without it
/// (the collection itself: FHIR searches, listings), with their index and that bare path.
pub fn unmatched_collection_paths(spec: &Spec) -> Vec<(usize, &Route, String)> {
    let table = crate::routes::RouteTable::new(&spec.routes, spec.unmatched_routes);
    spec.routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.phi)
        .filter_map(|(i, r)| {
            let prefix = r.matcher.path_prefix.as_deref()?;
            let bare = prefix.strip_suffix('/').filter(|b| b.starts_with('/'))?;
            let covered = ["GET", "POST"].iter().any(|m| {
                !matches!(
                    table.find(m, bare),
                    crate::routes::RouteMatch::UnmatchedPhi
                        | crate::routes::RouteMatch::UnmatchedDeny
                )
            });
            (!covered).then(|| (i, r, bare.to_string()))
        })
        .collect()
}

fn public_routes_overlapping_phi(routes: &[Route], errors: &mut PolicyErrors) {
    for (i, public) in routes.iter().enumerate().filter(|(_, r)| r.public) {
        for (j, phi) in routes.iter().enumerate().filter(|(_, r)| r.phi) {
            let Some(example) = overlap(&public.matcher, &phi.matcher) else {
                continue;
            };
            let order = if i < j {
                "is listed first and takes"
            } else {
                "is listed after it and names"
            };
            errors.push(
                format!("spec.routes[{i}].match"),
                format!(
                    "public route `{}` matches `{example}`, a path of PHI route `{}` (spec.routes[{j}]): it {order} PHI requests without authentication or audit; narrow it or remove it",
                    public.name, phi.name
                ),
            );
        }
    }
}

/// A path both matchers match (and a method both allow), if there is one.
fn overlap(a: &RouteMatch, b: &RouteMatch) -> Option<String> {
    let methods_meet = a.methods.is_empty()
        || b.methods.is_empty()
        || a.methods.iter().any(|m| b.methods.contains(m));
    if !methods_meet {
        return None;
    }
    match (rule(a)?, rule(b)?) {
        (Rule::Exact(x), Rule::Exact(y)) => (x == y).then(|| x.to_string()),
        (Rule::Exact(x), Rule::Prefix(y)) | (Rule::Prefix(y), Rule::Exact(x)) => {
            x.starts_with(y).then(|| x.to_string())
        }
        (Rule::Prefix(x), Rule::Prefix(y)) => {
            if x.starts_with(y) {
                Some(x.to_string())
            } else if y.starts_with(x) {
                Some(y.to_string())
            } else {
                None
            }
        }
    }
}

enum Rule<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

fn rule(m: &RouteMatch) -> Option<Rule<'_>> {
    match (&m.path, &m.path_prefix) {
        (Some(p), None) => Some(Rule::Exact(p)),
        (None, Some(p)) => Some(Rule::Prefix(p)),
        // Both or neither: validation reports it.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::test_support::remote_idp;
    use serde_json::{json, Value};

    /// A valid and safe spec.
    fn safe_spec() -> Value {
        json!({
            "identity": {
                "providers": [remote_idp()],
                "sharedAccounts": {"denySubjects": ["admin"], "denySubjectPrefixes": ["shared-"]},
                "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
            },
            "routes": [
                {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
                {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true},
                {"name": "metadata", "match": {"path": "/fhir/metadata"}, "public": true}
            ],
            "audit": {"collector": {"cluster": "audit-collector"}}
        })
    }

    /// The spec must stay valid for the filters: safety is a separate question.
    fn safety_of(spec: Value) -> Vec<String> {
        let policy = match Policy::from_spec_value(spec) {
            Ok(p) => p,
            Err(e) => panic!("not valid: {e}"),
        };
        safety_errors(&policy.spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn without(mut spec: Value, pointer: &str, key: &str) -> Value {
        if let Some(Value::Object(m)) = spec.pointer_mut(pointer) {
            m.remove(key);
        }
        spec
    }

    fn with_routes(mut spec: Value, routes: Value) -> Value {
        spec["routes"] = routes;
        spec
    }

    #[test]
    fn a_safe_spec_has_no_safety_errors() {
        assert_eq!(safety_of(safe_spec()), Vec::<String>::new());
    }

    #[test]
    fn no_audit_section_is_unsafe() {
        let errs = safety_of(without(safe_spec(), "", "audit"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("spec.audit: is required: audit controls (164.312(b))"));
    }

    #[test]
    fn no_break_glass_is_unsafe() {
        let errs = safety_of(without(safe_spec(), "/identity", "breakGlass"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("spec.identity.breakGlass: is required: emergency access"));
    }

    #[test]
    fn no_shared_account_list_is_unsafe() {
        let errs = safety_of(without(safe_spec(), "/identity", "sharedAccounts"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("spec.identity.sharedAccounts: must list"));
    }

    #[test]
    fn mtls_off_is_unsafe_and_has_no_exception() {
        let mut spec = safe_spec();
        spec["transport"] = json!({"requireMtls": false});
        let errs = safety_of(spec);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("spec.transport.requireMtls: `false` switches mTLS off"));
    }

    #[test]
    fn a_public_prefix_shadowing_a_phi_prefix_is_unsafe() {
        let spec = with_routes(
            safe_spec(),
            json!([
                {"name": "docs", "match": {"pathPrefix": "/fhir"}, "public": true},
                {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true}
            ]),
        );
        let errs = safety_of(spec);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("spec.routes[0].match: public route `docs` matches `/fhir/Patient/`, a path of PHI route `patient` (spec.routes[1]): it is listed first"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_public_route_after_a_phi_route_with_the_same_path_is_unsafe() {
        let spec = with_routes(
            safe_spec(),
            json!([
                {"name": "patient", "match": {"path": "/fhir/Patient"}, "phi": true},
                {"name": "patient-public", "match": {"path": "/fhir/Patient"}, "public": true}
            ]),
        );
        let errs = safety_of(spec);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("spec.routes[1].match: public route `patient-public` matches `/fhir/Patient`, a path of PHI route `patient` (spec.routes[0]): it is listed after it"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_public_exact_path_inside_a_phi_prefix_is_unsafe() {
        let spec = with_routes(
            safe_spec(),
            json!([
                {"name": "probe", "match": {"path": "/fhir/Patient/status"}, "public": true},
                {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true}
            ]),
        );
        let errs = safety_of(spec);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].contains("matches `/fhir/Patient/status`"),
            "{errs:#?}"
        );
    }

    #[test]
    fn disjoint_paths_or_methods_do_not_overlap() {
        let spec = with_routes(
            safe_spec(),
            json!([
                {"name": "options", "match": {"pathPrefix": "/fhir/", "methods": ["OPTIONS"]}, "public": true},
                {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET"]}, "phi": true},
                {"name": "exact", "match": {"path": "/fhir/Patient"}, "public": true},
                {"name": "other", "match": {"pathPrefix": "/billing/"}, "phi": true}
            ]),
        );
        assert_eq!(safety_of(spec), Vec::<String>::new());
        // The same public prefix without its method list does overlap.
        let spec = with_routes(
            safe_spec(),
            json!([
                {"name": "options", "match": {"pathPrefix": "/fhir/"}, "public": true},
                {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET"]}, "phi": true}
            ]),
        );
        assert_eq!(safety_of(spec).len(), 1);
    }

    #[test]
    fn a_phi_prefix_whose_collection_path_falls_to_unmatched_phi_is_unsafe() {
        let mut spec = safe_spec();
        spec["unmatchedRoutes"] = json!("phi");
        let errs = safety_of(spec.clone());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("spec.routes[1].match.pathPrefix: PHI route `patient` does not cover its collection path `/fhir/Patient`"),
            "{errs:#?}"
        );
        // A route for the collection settles it.
        spec["routes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "search", "match": {"path": "/fhir/Patient"}, "phi": true}));
        assert_eq!(safety_of(spec), Vec::<String>::new());
    }

    #[test]
    fn with_unmatched_deny_the_collection_path_is_a_warning_only() {
        let policy = Policy::from_spec_value(safe_spec()).unwrap();
        assert!(safety_errors(&policy.spec).is_empty());
        let warnings: Vec<String> = safety_warnings(&policy.spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0]
                .contains("collection path `/fhir/Patient`: `unmatchedRoutes: deny` refuses it"),
            "{warnings:#?}"
        );
    }

    #[test]
    fn every_rule_is_reported_together() {
        let mut spec = without(safe_spec(), "", "audit");
        spec = without(spec, "/identity", "breakGlass");
        spec["transport"] = json!({"requireMtls": false});
        spec["routes"][0]["match"] = json!({"pathPrefix": "/"});
        spec["routes"][0]["allowPlaintext"] = json!(false);
        let errs = safety_of(spec);
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }
}
