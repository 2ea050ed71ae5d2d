//! The route table: first match wins; a miss falls to `unmatchedRoutes`, never to public.
//!
//! One rule for authn, audit and transport: the decision never depends on how a request
//! spells a resource. A method that is not an upper-case token, a path that is not in normal
//! form (`..`, `.`, `//`, `\\`, `%2e`, `%2f`, `%5c`, no leading `/`), a `;` path parameter on a
//! route that has not opted in (`allowPathParameters`), or a path that differs from a route's
//! `match` only in letter case is refused before any route applies. A path a route's `match`
//! covers gets that route's checks, or a 405 when no covering route lists the method: it never
//! falls through to `unmatchedRoutes`.

use crate::denial::Denial;
use crate::policy::schema::{Inference, Route, UnmatchedRoutes};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    Exact(String),
    Prefix(String),
}

impl PathRule {
    /// Every path this rule covers is covered by `outer` too.
    fn within(&self, outer: &PathRule) -> bool {
        let bare = |p: &str| p.strip_suffix('/').unwrap_or(p).to_string();
        match (self, outer) {
            (PathRule::Exact(a), PathRule::Exact(b)) => bare(a) == bare(b),
            (PathRule::Exact(a) | PathRule::Prefix(a), PathRule::Prefix(b)) => {
                a.starts_with(b.as_str())
            }
            (PathRule::Prefix(_), PathRule::Exact(_)) => false,
        }
    }
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
                // A `;` parameter is not part of the id (`allowPathParameters` routes only:
                // every other route refuses the request before this runs).
                segments
                    .get(*index)
                    .map(|s| s.split(';').next().unwrap_or_default().to_string())
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
    /// `;` path parameters (`/a;v=1/b`) are accepted on this route (matched without them).
    pub allow_path_parameters: bool,
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
            allow_path_parameters: route.allow_path_parameters,
        }
    }

    /// Whether the path rule covers `path`. An exact path covers itself with or without one
    /// trailing slash (`/fhir/metadata` and `/fhir/metadata/` name the same resource to most
    /// servers); a prefix covers what starts with it.
    fn covers(&self, path: &str, fold_case: bool) -> bool {
        let eq = |a: &str, b: &str| {
            if fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.rule {
            PathRule::Exact(p) if p.is_empty() => false,
            PathRule::Exact(p) => {
                eq(path, p)
                    || path.strip_suffix('/').is_some_and(|t| eq(t, p))
                    || p.strip_suffix('/').is_some_and(|t| eq(path, t))
            }
            PathRule::Prefix(p) => path.get(..p.len()).is_some_and(|head| eq(head, p.as_str())),
        }
    }

    fn lists(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// The methods a 405's `Allow` names for this route: its list, without DELETE on a
    /// soft-delete-only route.
    fn allow(&self) -> impl Iterator<Item = &String> {
        self.methods
            .iter()
            .filter(|m| !(self.soft_delete_only && *m == "DELETE"))
    }
}

/// The outcome of matching one request against the table.
#[derive(Debug, Clone)]
pub enum RouteMatch<'a> {
    Route(&'a CompiledRoute),
    /// No route covers the path and `unmatchedRoutes: phi`: authenticate and audit.
    UnmatchedPhi,
    /// No route covers the path and `unmatchedRoutes: deny`.
    UnmatchedDeny,
    /// Refused for its spelling before any route applies: a 400 `invalid_request`
    /// (`method_not_canonical`, `path_not_canonical`, `path_parameter`).
    Refused(Denial),
    /// Routes cover the path but none lists the method: 405 with these methods in `Allow`.
    MethodNotAllowed(Vec<String>),
}

impl RouteMatch<'_> {
    pub fn name(&self) -> &str {
        match self {
            RouteMatch::Route(r) => &r.name,
            RouteMatch::UnmatchedPhi | RouteMatch::UnmatchedDeny => "unmatched",
            RouteMatch::Refused(_) | RouteMatch::MethodNotAllowed(_) => "refused",
        }
    }

    /// Every refusal is audited like a PHI request (every denial is recorded).
    pub fn class(&self) -> RouteClass {
        match self {
            RouteMatch::Route(r) => r.class,
            _ => RouteClass::Phi,
        }
    }

    /// The denial the route table itself answers with, before identity: a spelling refusal,
    /// an unlisted method, or `unmatchedRoutes: deny`.
    pub fn denial(&self) -> Option<Denial> {
        match self {
            RouteMatch::Refused(d) => Some(*d),
            RouteMatch::MethodNotAllowed(_) => Some(Denial::MethodNotAllowed),
            RouteMatch::UnmatchedDeny => Some(Denial::RouteDenied),
            RouteMatch::Route(_) | RouteMatch::UnmatchedPhi => None,
        }
    }

    /// The methods for a 405's `Allow` header: the covering routes' methods for an unlisted
    /// method; the matched route's (without DELETE when soft-delete-only) otherwise.
    pub fn allowed_methods(&self) -> Vec<String> {
        match self {
            RouteMatch::Route(r) => r.allow().cloned().collect(),
            RouteMatch::MethodNotAllowed(allow) => allow.clone(),
            _ => Vec::new(),
        }
    }

    pub fn route(&self) -> Option<&CompiledRoute> {
        match self {
            RouteMatch::Route(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    unmatched: UnmatchedRoutes,
    /// The last request matched and its outcome: in the combined filter every stage asks for
    /// the route of the same request (audit's facts, response signing, transport, authn), and
    /// matching it once instead of four times saves ~10,000 instructions per request. One
    /// entry, compared byte for byte. A `Mutex` only so that a policy stays `Sync` (the fuzz
    /// targets and the CLI keep policies in statics); it is never waited on — a table busy on
    /// another thread is simply matched again.
    last: Mutex<Option<LastMatch>>,
}

impl Clone for RouteTable {
    /// A copy of the table; it remembers no request.
    fn clone(&self) -> RouteTable {
        RouteTable {
            routes: self.routes.clone(),
            unmatched: self.unmatched,
            last: Mutex::new(None),
        }
    }
}

#[derive(Debug, Clone)]
struct LastMatch {
    method: String,
    path: String,
    outcome: Outcome,
}

/// A [`RouteMatch`] without the borrow: the route by its index in the table.
#[derive(Debug, Clone)]
enum Outcome {
    Route(usize),
    UnmatchedPhi,
    UnmatchedDeny,
    Refused(Denial),
    MethodNotAllowed(Vec<String>),
}

impl RouteTable {
    pub fn new(routes: &[Route], unmatched: UnmatchedRoutes) -> RouteTable {
        RouteTable {
            routes: routes.iter().map(CompiledRoute::compile).collect(),
            unmatched,
            last: Mutex::new(None),
        }
    }

    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// The one route decision for authn, audit and transport. Matches on the path without its
    /// query string, in this order:
    /// 1. a method that is not an upper-case token: 400 `method_not_canonical` (HTTP/2 lets a
    ///    client send `delete`, which case-folding frameworks run as DELETE);
    /// 2. a path not in normal form (`..`, `.`, `//`, `\\`, `%2e`, `%2f`, `%3b`, `%5c`, no
    ///    leading `/`): 400 `path_not_canonical` on every route class (Envoy's
    ///    `normalize_path` should have cleaned it; if it did not, we refuse to guess);
    /// 3. routes in order: the first whose path rule covers the path and whose methods list the
    ///    method wins. A route whose path rule covers the path only when letter case is ignored
    ///    refuses it (400 `path_not_canonical`): a case-folding server would serve that route's
    ///    resource without its checks;
    /// 4. a path some route covers, with a method none of them lists: 405 with `Allow`. Once a
    ///    covering route has not listed the method, a later route is considered only if its
    ///    path rule lies inside that route's (the same `match` split by method, or a narrower
    ///    one): `PUT` on a GET-only VIP prefix must not escape to a broader route after it;
    /// 5. nothing covers it: `unmatchedRoutes`.
    ///
    /// A path with `;` parameters is matched without them, and refused (400 `path_parameter`)
    /// unless the route it matches sets `allowPathParameters`; a dot segment hidden behind a
    /// parameter (`/..;/`, which Tomcat resolves as `..`) is refused on every route.
    pub fn find(&self, method: &str, path: &str) -> RouteMatch<'_> {
        if let Ok(last) = self.last.try_lock() {
            if let Some(last) = last.as_ref() {
                if last.method == method && last.path == path {
                    return self.to_match(last.outcome.clone());
                }
            }
        }
        let outcome = self.outcome(method, path);
        if let Ok(mut last) = self.last.try_lock() {
            *last = Some(LastMatch {
                method: method.to_string(),
                path: path.to_string(),
                outcome: outcome.clone(),
            });
        }
        self.to_match(outcome)
    }

    fn to_match(&self, outcome: Outcome) -> RouteMatch<'_> {
        match outcome {
            Outcome::Route(i) => match self.routes.get(i) {
                Some(route) => RouteMatch::Route(route),
                // Cannot happen (the index came from this table); refuse rather than guess.
                None => RouteMatch::UnmatchedDeny,
            },
            Outcome::UnmatchedPhi => RouteMatch::UnmatchedPhi,
            Outcome::UnmatchedDeny => RouteMatch::UnmatchedDeny,
            Outcome::Refused(d) => RouteMatch::Refused(d),
            Outcome::MethodNotAllowed(allow) => RouteMatch::MethodNotAllowed(allow),
        }
    }

    /// The matching itself (see [`RouteTable::find`]).
    fn outcome(&self, method: &str, path: &str) -> Outcome {
        if !is_canonical_method(method) {
            return Outcome::Refused(Denial::MethodNotCanonical);
        }
        let (path_only, _) = split_query(path);
        if !is_canonical_path(path_only) {
            return Outcome::Refused(Denial::PathNotCanonical);
        }
        let has_parameters = path_only.contains(';');
        let stripped;
        let path_only = if has_parameters {
            stripped = strip_path_parameters(path_only);
            // `/a/..;/b` is `/a/../b` to the server behind: never matched, on any route.
            if !is_canonical_path(&stripped) {
                return Outcome::Refused(Denial::PathParameter);
            }
            stripped.as_str()
        } else {
            path_only
        };
        let mut allow: Vec<String> = Vec::new();
        // The covering routes that did not list the method: a later route may serve the
        // request only inside each of their path rules (the same `match` split by method, or
        // a narrower one), never a broader route the method would escape to.
        let mut declined: Vec<&PathRule> = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            if !route.covers(path_only, false) {
                if route.covers(path_only, true) {
                    return Outcome::Refused(Denial::PathNotCanonical);
                }
                continue;
            }
            if !declined.iter().all(|d| route.rule.within(d)) {
                continue;
            }
            if route.lists(method) {
                if has_parameters && !route.allow_path_parameters {
                    return Outcome::Refused(Denial::PathParameter);
                }
                return Outcome::Route(i);
            }
            declined.push(&route.rule);
            for m in route.allow() {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
        }
        let covered = !declined.is_empty();
        if has_parameters {
            return Outcome::Refused(Denial::PathParameter);
        }
        if covered {
            return Outcome::MethodNotAllowed(allow);
        }
        match self.unmatched {
            UnmatchedRoutes::Phi => Outcome::UnmatchedPhi,
            UnmatchedRoutes::Deny => Outcome::UnmatchedDeny,
        }
    }
}

/// An RFC 9110 method token with no lower-case letter (methods are case-sensitive; every
/// standard one is upper-case, and `match.methods` only lists those).
fn is_canonical_method(method: &str) -> bool {
    !method.is_empty()
        && method.len() <= 32
        && method.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// Each segment without its `;` parameters (`/a;x=1/b;y` -> `/a/b`), as Tomcat and other
/// servlet containers resolve it. A segment that is only parameters (`/;x/`) becomes empty,
/// which the normal-form check then refuses as `//`.
fn strip_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|s| s.split(';').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_canonical_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.starts_with('/')
        && !path.contains("//")
        && !path.contains('\\')
        && !path.split('/').any(|s| s == ".." || s == ".")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !lower.contains("%2e")
        && !lower.contains("%3b")
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
            allow_path_parameters: false,
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

    /// What a match says, for comparing two of them.
    fn said(m: &RouteMatch<'_>) -> (String, Option<Denial>, Vec<String>) {
        (m.name().to_string(), m.denial(), m.allowed_methods())
    }

    #[test]
    fn the_remembered_match_is_the_match_of_that_request_only() {
        let t = table(UnmatchedRoutes::Deny);
        let requests = [
            ("GET", "/fhir/Patient/1"),
            ("POST", "/fhir/Patient/1"),
            ("DELETE", "/fhir/Patient/1"),
            ("GET", "/healthz"),
            ("get", "/healthz"),
            ("GET", "/fhir/../healthz"),
            ("GET", "/other"),
            ("GET", "/FHIR/Patient/1"),
        ];
        // Each request asked twice in a row (the second answer is the remembered one), and the
        // requests interleaved: every answer equals a fresh table's.
        for round in 0..2 {
            for (method, path) in requests {
                let fresh = table(UnmatchedRoutes::Deny);
                let want = said(&fresh.find(method, path));
                assert_eq!(said(&t.find(method, path)), want, "{round} {method} {path}");
                assert_eq!(said(&t.find(method, path)), want, "{round} {method} {path}");
            }
        }
        // Same path, another method: not the remembered answer.
        assert_eq!(t.find("GET", "/fhir/x").name(), "read");
        assert_eq!(t.find("PUT", "/fhir/x").name(), "write");
        assert_eq!(
            t.find("PATCH", "/fhir/x").denial(),
            Some(Denial::MethodNotAllowed)
        );
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
        assert!(matches!(
            t.find("GET", "/healthzx"),
            RouteMatch::UnmatchedPhi
        ));
    }

    #[test]
    fn unmatched_follows_policy() {
        assert!(matches!(
            table(UnmatchedRoutes::Phi).find("DELETE", "/other"),
            RouteMatch::UnmatchedPhi
        ));
        assert!(matches!(
            table(UnmatchedRoutes::Deny).find("GET", "/other"),
            RouteMatch::UnmatchedDeny
        ));
        assert_eq!(RouteMatch::UnmatchedDeny.class(), RouteClass::Phi);
        assert_eq!(
            RouteMatch::UnmatchedDeny.denial(),
            Some(Denial::RouteDenied)
        );
        assert_eq!(RouteMatch::UnmatchedPhi.denial(), None);
    }

    #[test]
    fn a_covered_path_with_an_unlisted_method_is_405_with_every_covering_routes_methods() {
        for unmatched in [UnmatchedRoutes::Phi, UnmatchedRoutes::Deny] {
            let t = table(unmatched);
            for method in ["DELETE", "PATCH", "HEAD", "OPTIONS"] {
                let m = t.find(method, "/fhir/Patient/1");
                assert_eq!(m.denial(), Some(Denial::MethodNotAllowed), "{method}");
                assert_eq!(m.allowed_methods(), ["GET", "PUT", "POST"], "{method}");
                assert_eq!(m.class(), RouteClass::Phi);
            }
        }
    }

    #[test]
    fn an_unlisted_method_never_escapes_to_a_broader_route_after_it() {
        let t = RouteTable::new(
            &[
                route("vip", None, Some("/fhir/Patient/vip/"), &["GET"]),
                route("patient", None, Some("/fhir/Patient/"), &["GET", "PUT"]),
                route("reads", None, Some("/lab/"), &["GET"]),
                route("lab-writes", None, Some("/lab/orders/"), &["POST"]),
                route("exact", Some("/lab/x"), None, &["PUT"]),
            ],
            UnmatchedRoutes::Phi,
        );
        let m = t.find("PUT", "/fhir/Patient/vip/200");
        assert_eq!(m.denial(), Some(Denial::MethodNotAllowed));
        assert_eq!(m.allowed_methods(), ["GET"]);
        assert_eq!(t.find("PUT", "/fhir/Patient/200").name(), "patient");
        // A narrower route after a broader one may serve what the broader one does not list.
        assert_eq!(t.find("POST", "/lab/orders/1").name(), "lab-writes");
        assert_eq!(t.find("PUT", "/lab/x").name(), "exact");
        assert_eq!(t.find("PUT", "/lab/x/").name(), "exact");
        let m = t.find("DELETE", "/lab/orders/1");
        assert_eq!(m.allowed_methods(), ["GET", "POST"]);
    }

    #[test]
    fn soft_delete_routes_leave_delete_out_of_allow() {
        let mut r = route("patient", None, Some("/fhir/Patient/"), &["GET", "DELETE"]);
        r.soft_delete_only = true;
        let t = RouteTable::new(&[r], UnmatchedRoutes::Deny);
        assert_eq!(
            t.find("PATCH", "/fhir/Patient/1").allowed_methods(),
            ["GET"]
        );
        assert_eq!(
            t.find("DELETE", "/fhir/Patient/1").allowed_methods(),
            ["GET"]
        );
        assert_eq!(t.find("DELETE", "/fhir/Patient/1").name(), "patient");
    }

    /// The same resource under every spelling, against the strictest route (a VIP record,
    /// one role) and the weakest (a public probe): each is the route itself or a refusal,
    /// never another route and never the unmatched rule.
    #[test]
    fn every_spelling_of_a_resource_is_that_route_or_a_refusal() {
        let mut health = route("health", Some("/healthz"), None, &[]);
        health.public = true;
        health.phi = false;
        let vip = route("vip", None, Some("/fhir/Patient/vip/"), &["GET"]);
        let patient = route("patient", None, Some("/fhir/Patient/"), &["GET", "PUT"]);
        let t = RouteTable::new(&[health, vip, patient], UnmatchedRoutes::Phi);
        let cases: &[(&str, &str, &str)] = &[
            ("GET", "/fhir/Patient/vip/200", "vip"),
            ("GET", "/fhir/Patient/vip/200?_format=json", "vip"),
            ("GET", "/healthz", "health"),
            ("GET", "/healthz/", "health"),
            ("GET", "/healthz?x=/fhir/Patient/vip/1", "health"),
        ];
        for (method, path, name) in cases {
            assert_eq!(t.find(method, path).name(), *name, "{method} {path}");
        }
        let refusals: &[(&str, &str, Denial)] = &[
            ("get", "/fhir/Patient/vip/200", Denial::MethodNotCanonical),
            ("Get", "/healthz", Denial::MethodNotCanonical),
            ("", "/healthz", Denial::MethodNotCanonical),
            ("PATCH", "/fhir/Patient/vip/200", Denial::MethodNotAllowed),
            ("HEAD", "/fhir/Patient/vip/200", Denial::MethodNotAllowed),
            (
                "GET",
                "/fhir/Patient/..;/Patient/vip/200",
                Denial::PathParameter,
            ),
            ("GET", "/fhir/Patient/vip;x/200", Denial::PathParameter),
            ("GET", "/fhir/Patient/vip/200;v=1", Denial::PathParameter),
            ("GET", "/fhir/Patient/;/vip/200", Denial::PathParameter),
            ("GET", "/healthz;a", Denial::PathParameter),
            (
                "GET",
                "/fhir/Patient/%2e%2e/Patient/vip/200",
                Denial::PathNotCanonical,
            ),
            (
                "GET",
                "/fhir/Patient/%2E%2E/Patient/vip/200",
                Denial::PathNotCanonical,
            ),
            (
                "GET",
                "/fhir/Patient/x/../vip/200",
                Denial::PathNotCanonical,
            ),
            ("GET", "/fhir/Patient/./vip/200", Denial::PathNotCanonical),
            ("GET", "/fhir/Patient//vip/200", Denial::PathNotCanonical),
            ("GET", "/fhir/Patient/vip%2f200", Denial::PathNotCanonical),
            (
                "GET",
                "/fhir/Patient/x%2F..%2Fvip/200",
                Denial::PathNotCanonical,
            ),
            (
                "GET",
                "/fhir/Patient/x\\..\\vip/200",
                Denial::PathNotCanonical,
            ),
            (
                "GET",
                "/fhir/Patient/x%5c..%5cvip/200",
                Denial::PathNotCanonical,
            ),
            ("GET", "/fhir/Patient/vip%3b/200", Denial::PathNotCanonical),
            ("GET", "/fhir/Patient/VIP/200", Denial::PathNotCanonical),
            ("GET", "/fhir/patient/vip/200", Denial::PathNotCanonical),
            ("GET", "/Healthz", Denial::PathNotCanonical),
            ("GET", "fhir/Patient/vip/200", Denial::PathNotCanonical),
            (
                "GET",
                "/healthz/../fhir/Patient/vip/200",
                Denial::PathNotCanonical,
            ),
            ("GET", "//healthz", Denial::PathNotCanonical),
        ];
        for (method, path, denial) in refusals {
            let m = t.find(method, path);
            assert_eq!(m.denial(), Some(*denial), "{method} {path}: {m:?}");
            assert!(m.route().is_none(), "{method} {path}");
        }
    }

    #[test]
    fn path_parameters_pass_only_where_a_route_opts_in_and_never_hide_a_dot_segment() {
        let mut matrix = route("matrix", None, Some("/api/"), &["GET"]);
        matrix.allow_path_parameters = true;
        let t = RouteTable::new(
            &[matrix, route("other", None, Some("/fhir/"), &["GET"])],
            UnmatchedRoutes::Phi,
        );
        assert_eq!(t.find("GET", "/api/cars;color=red/1").name(), "matrix");
        assert_eq!(t.find("GET", "/api;v=2/cars").name(), "matrix");
        assert_eq!(
            t.find("GET", "/fhir/x;v=2").denial(),
            Some(Denial::PathParameter)
        );
        assert_eq!(
            t.find("GET", "/nowhere;v=2").denial(),
            Some(Denial::PathParameter)
        );
        for path in ["/api/x/..;/y", "/api/.;/y", "/api/;x/y", "/api/x/..;a=b/y"] {
            assert_eq!(
                t.find("GET", path).denial(),
                Some(Denial::PathParameter),
                "{path}"
            );
        }
        let src = PatientSource::from_template("/api/cars/{patient}").unwrap();
        assert_eq!(
            src.extract("/api/cars/p7;jsessionid=1", |_| None),
            Some("p7".into())
        );
    }

    #[test]
    fn method_tokens_are_upper_case_or_refused() {
        let t = table(UnmatchedRoutes::Phi);
        for m in ["GET", "PUT", "M-SEARCH", "PROPFIND"] {
            assert_ne!(
                t.find(m, "/x").denial(),
                Some(Denial::MethodNotCanonical),
                "{m}"
            );
        }
        for m in ["get", "Put", "", "G ET", "GET\r", "GÉT", "A(B)"] {
            assert_eq!(
                t.find(m, "/x").denial(),
                Some(Denial::MethodNotCanonical),
                "{m:?}"
            );
        }
        assert_eq!(
            t.find(&"A".repeat(33), "/x").denial(),
            Some(Denial::MethodNotCanonical)
        );
    }

    #[test]
    fn an_exact_path_covers_its_trailing_slash_spelling() {
        let t = RouteTable::new(
            &[
                route("search", Some("/fhir/Patient"), None, &["GET"]),
                route("dir", Some("/docs/"), None, &["GET"]),
            ],
            UnmatchedRoutes::Phi,
        );
        assert_eq!(t.find("GET", "/fhir/Patient").name(), "search");
        assert_eq!(t.find("GET", "/fhir/Patient/").name(), "search");
        assert_eq!(t.find("GET", "/fhir/Patient/?name=x").name(), "search");
        assert_eq!(t.find("GET", "/docs").name(), "dir");
        assert!(matches!(
            t.find("GET", "/fhir/Patient/1"),
            RouteMatch::UnmatchedPhi
        ));
        assert_eq!(
            t.find("POST", "/fhir/Patient/").denial(),
            Some(Denial::MethodNotAllowed)
        );
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
