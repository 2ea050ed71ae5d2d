//! The route table: first match wins; a miss falls to `unmatchedRoutes`, never to public.

use crate::policy::schema::{Inference, Route, UnmatchedRoutes};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    Exact(String),
    Prefix(String),
}

/// How a route treats identity and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// No authentication, no PHI audit (probes, metadata).
    Public,
    /// Authenticated and audited as a PHI access.
    Phi,
    /// Authenticated, audited only when denied.
    Protected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientSource {
    /// The path segment at `index` (after the leading '/'), when the fixed segments match.
    PathSegment {
        template: Vec<String>,
        index: usize,
    },
    Header(String),
    Query(String),
}

impl PatientSource {
    /// `/fhir/Patient/{patient}`: `{patient}` must be one whole segment, exactly once.
    pub fn from_template(template: &str) -> Option<PatientSource> {
        let rest = template.strip_prefix('/')?;
        let segments: Vec<String> = rest.split('/').map(String::from).collect();
        let holes: Vec<usize> = segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.contains('{') || s.contains('}'))
            .map(|(i, _)| i)
            .collect();
        match holes.as_slice() {
            [i] if segments.get(*i).is_some_and(|s| *s == "{patient}") => {
                Some(PatientSource::PathSegment {
                    template: segments,
                    index: *i,
                })
            }
            _ => None,
        }
    }

    /// The patient id named by a request, if the request carries one.
    pub fn extract(&self, path: &str, header: impl Fn(&str) -> Option<String>) -> Option<String> {
        let (path_only, query) = split_query(path);
        let found = match self {
            PatientSource::PathSegment { template, index } => {
                let segments: Vec<&str> = path_only.strip_prefix('/')?.split('/').collect();
                if segments.len() < template.len() {
                    return None;
                }
                let fixed_match = template
                    .iter()
                    .zip(&segments)
                    .enumerate()
                    .all(|(i, (t, s))| i == *index || t == s);
                if !fixed_match {
                    return None;
                }
                segments.get(*index).map(|s| s.to_string())
            }
            PatientSource::Header(name) => header(name),
            PatientSource::Query(name) => query.and_then(|q| query_param(q, name)),
        };
        found.filter(|p| !p.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub name: String,
    pub rule: PathRule,
    /// Empty: any method.
    pub methods: Vec<String>,
    pub class: RouteClass,
    pub allow_roles: Vec<String>,
    pub patient: Option<PatientSource>,
    pub soft_delete_only: bool,
    pub inference: Option<Inference>,
    pub allow_plaintext: bool,
    pub sign_responses: bool,
    pub verify_requests: bool,
}

impl CompiledRoute {
    pub fn compile(route: &Route) -> CompiledRoute {
        let rule = match (&route.matcher.path, &route.matcher.path_prefix) {
            (Some(p), _) => PathRule::Exact(p.clone()),
            (None, Some(p)) => PathRule::Prefix(p.clone()),
            // Validation refuses this; an empty exact path matches nothing.
            (None, None) => PathRule::Exact(String::new()),
        };
        let class = if route.public {
            RouteClass::Public
        } else if route.phi {
            RouteClass::Phi
        } else {
            RouteClass::Protected
        };
        let patient = route.patient_from.as_ref().and_then(|pf| {
            if let Some(t) = &pf.path_template {
                PatientSource::from_template(t)
            } else if let Some(h) = &pf.header {
                Some(PatientSource::Header(h.to_ascii_lowercase()))
            } else {
                pf.query.as_ref().map(|q| PatientSource::Query(q.clone()))
            }
        });
        CompiledRoute {
            name: route.name.clone(),
            rule,
            methods: route.matcher.methods.clone(),
            class,
            allow_roles: route.allow_roles.clone(),
            patient,
            soft_delete_only: route.soft_delete_only,
            inference: route.inference.clone(),
            allow_plaintext: route.allow_plaintext,
            sign_responses: route.sign_responses || route.inference.is_some(),
            verify_requests: route.verify_requests,
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.rule {
            PathRule::Exact(p) => path == p,
            PathRule::Prefix(p) => path.starts_with(p.as_str()),
        };
        path_ok && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// The outcome of matching one request against the table.
#[derive(Debug, Clone, Copy)]
pub enum RouteMatch<'a> {
    Route(&'a CompiledRoute),
    /// No route matched and `unmatchedRoutes: phi`: authenticate and audit.
    UnmatchedPhi,
    /// No route matched and `unmatchedRoutes: deny`.
    UnmatchedDeny,
}

impl RouteMatch<'_> {
    pub fn name(&self) -> &str {
        match self {
            RouteMatch::Route(r) => &r.name,
            RouteMatch::UnmatchedPhi | RouteMatch::UnmatchedDeny => "unmatched",
        }
    }

    pub fn class(&self) -> RouteClass {
        match self {
            RouteMatch::Route(r) => r.class,
            RouteMatch::UnmatchedPhi | RouteMatch::UnmatchedDeny => RouteClass::Phi,
        }
    }

    pub fn route(&self) -> Option<&CompiledRoute> {
        match self {
            RouteMatch::Route(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    unmatched: UnmatchedRoutes,
}

impl RouteTable {
    pub fn new(routes: &[Route], unmatched: UnmatchedRoutes) -> RouteTable {
        RouteTable {
            routes: routes.iter().map(CompiledRoute::compile).collect(),
            unmatched,
        }
    }

    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// Matches on the path without its query string. A path that is not in normal form
    /// (`..`, `//`, `%2F`, a missing leading '/') never matches a public route: Envoy's
    /// `normalize_path` should have cleaned it, and if it did not we refuse to guess.
    pub fn find(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let (path_only, _) = split_query(path);
        let suspicious = is_suspicious_path(path_only);
        for route in &self.routes {
            if route.class == RouteClass::Public && suspicious {
                continue;
            }
            if route.matches(method, path_only) {
                return RouteMatch::Route(route);
            }
        }
        match self.unmatched {
            UnmatchedRoutes::Phi => RouteMatch::UnmatchedPhi,
            UnmatchedRoutes::Deny => RouteMatch::UnmatchedDeny,
        }
    }
}

fn is_suspicious_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !path.starts_with('/')
        || path.contains("//")
        || path.contains('\\')
        || path.split('/').any(|s| s == ".." || s == ".")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%2e")
}

pub fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q.split('#').next().unwrap_or(q))),
        None => (path.split('#').next().unwrap_or(path), None),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::schema::{PatientFrom, RouteMatch as MatchSpec};

    fn route(name: &str, exact: Option<&str>, prefix: Option<&str>, methods: &[&str]) -> Route {
        Route {
            name: name.into(),
            matcher: MatchSpec {
                path: exact.map(String::from),
                path_prefix: prefix.map(String::from),
                methods: methods.iter().map(|m| m.to_string()).collect(),
            },
            public: false,
            phi: true,
            allow_roles: vec![],
            patient_from: None,
            soft_delete_only: false,
            inference: None,
            allow_plaintext: false,
            sign_responses: false,
            verify_requests: false,
        }
    }

    fn table(unmatched: UnmatchedRoutes) -> RouteTable {
        let mut health = route("health", Some("/healthz"), None, &[]);
        health.public = true;
        health.phi = false;
        RouteTable::new(
            &[
                health,
                route("read", None, Some("/fhir/"), &["GET"]),
                route("write", None, Some("/fhir/"), &["PUT", "POST"]),
            ],
            unmatched,
        )
    }

    #[test]
    fn first_match_wins_and_methods_filter() {
        let t = table(UnmatchedRoutes::Phi);
        assert_eq!(t.find("GET", "/fhir/Patient/1").name(), "read");
        assert_eq!(t.find("POST", "/fhir/Patient/1").name(), "write");
        assert_eq!(t.find("GET", "/healthz").name(), "health");
        assert_eq!(t.find("GET", "/healthz?verbose=1").name(), "health");
    }

    #[test]
    fn exact_paths_do_not_match_prefixes() {
        let t = table(UnmatchedRoutes::Phi);
        assert!(matches!(
            t.find("GET", "/healthz/x"),
            RouteMatch::UnmatchedPhi
        ));
    }

    #[test]
    fn unmatched_follows_policy() {
        assert!(matches!(
            table(UnmatchedRoutes::Phi).find("DELETE", "/fhir/x"),
            RouteMatch::UnmatchedPhi
        ));
        assert!(matches!(
            table(UnmatchedRoutes::Deny).find("GET", "/other"),
            RouteMatch::UnmatchedDeny
        ));
        assert_eq!(RouteMatch::UnmatchedDeny.class(), RouteClass::Phi);
    }

    #[test]
    fn suspicious_paths_never_reach_public_routes() {
        let t = table(UnmatchedRoutes::Phi);
        for p in [
            "/healthz/../fhir",
            "//healthz",
            "/%2e%2e/healthz",
            "healthz",
        ] {
            assert_ne!(t.find("GET", p).name(), "health", "{p}");
        }
    }

    #[test]
    fn patient_from_template_header_and_query() {
        let src = PatientSource::from_template("/fhir/Patient/{patient}").unwrap();
        assert_eq!(
            src.extract("/fhir/Patient/123", |_| None),
            Some("123".into())
        );
        assert_eq!(
            src.extract("/fhir/Patient/123/_history?x=1", |_| None),
            Some("123".into())
        );
        assert_eq!(src.extract("/fhir/Observation/123", |_| None), None);
        assert_eq!(src.extract("/fhir/Patient/", |_| None), None);
        assert_eq!(src.extract("/fhir/Patient", |_| None), None);

        let h = PatientSource::Header("x-patient-id".into());
        assert_eq!(
            h.extract("/ai", |n| (n == "x-patient-id").then(|| "p9".into())),
            Some("p9".into())
        );
        assert_eq!(h.extract("/ai", |_| Some(String::new())), None);

        let q = PatientSource::Query("patient".into());
        assert_eq!(q.extract("/x?a=1&patient=77", |_| None), Some("77".into()));
        assert_eq!(q.extract("/x?patientx=77", |_| None), None);
    }

    #[test]
    fn template_rules() {
        for bad in [
            "fhir/{patient}",
            "/fhir/{patient}/{patient}",
            "/fhir/p{patient}",
            "/fhir/{id}",
            "/fhir",
        ] {
            assert!(PatientSource::from_template(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn compiled_route_signs_inference_responses() {
        let mut r = route("ai", None, Some("/ai"), &[]);
        r.inference = Some(Inference {
            model_header: "x-model-name".into(),
            version_header: "x-model-version".into(),
        });
        r.patient_from = Some(PatientFrom {
            header: Some("X-Patient-Id".into()),
            ..Default::default()
        });
        let c = CompiledRoute::compile(&r);
        assert!(c.sign_responses);
        assert_eq!(
            c.patient,
            Some(PatientSource::Header("x-patient-id".into()))
        );
    }
}
