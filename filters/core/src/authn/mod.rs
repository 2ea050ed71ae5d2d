//! The authn decision: 164.312(a)(2)(i) unique user identification, (a)(2)(ii) emergency
//! access, (a)(2)(iii) automatic logoff and (d) person authentication.
//!
//! `decide` takes plain request facts, the policy, the authenticator (keys + verified-token
//! cache), a session store and the clock, and returns a `Verdict`. The filter shell only
//! gathers the facts and applies the verdict.

pub mod authority;
pub mod failure_budget;
pub mod jwks_schedule;
pub mod session;
pub mod token_cache;

use crate::denial::Denial;
use crate::headers;
use crate::jwt::envoy::{self, EnvoyPayload};
use crate::jwt::{self, KeySet, ProviderKeys, TokenError, VerifiedToken};
use crate::policy::{Identity, Policy, Verification};
use crate::routes::{RouteClass, RouteMatch};
use failure_budget::FailureBudget;
use session::{SessionKey, SessionState};
use token_cache::TokenCache;

/// What the shell read from the request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub method: String,
    /// `:path`, with its query string.
    pub path: String,
    /// Every `authorization` header value, in order.
    pub authorization: Vec<String>,
    /// The break-glass header's value, if present.
    pub break_glass: Option<String>,
    /// Request headers the policy names as a route's `patientFrom.header` (lowercase names,
    /// in order; a repeated header appears twice).
    pub patient_headers: Vec<(String, String)>,
    /// What Envoy's jwt_authn verified for this request (`verification: envoy` providers;
    /// read with [`jwt::envoy::EnvoyPayload::read`]).
    pub envoy_payload: Option<EnvoyPayload>,
}

/// The session store could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStoreUnavailable;

/// Reads and writes session buckets (proxy-wasm shared data in the shell).
pub trait SessionStore {
    /// Apply `session::touch` to the bucket of `key` atomically and return the state.
    /// An unavailable store is treated as an expired session: fail closed.
    fn touch(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle_timeout: u64,
    ) -> Result<SessionState, SessionStoreUnavailable>;

    /// As [`SessionStore::touch`], with this store's last sighting of the session before the
    /// touch (unix seconds; None on first sight), which the session authority is told.
    fn touch_seen(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle_timeout: u64,
    ) -> Result<(SessionState, Option<u64>), SessionStoreUnavailable> {
        self.touch(key, now, idle_timeout).map(|s| (s, None))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// No token reached verification.
    NotUsed,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub route: String,
    /// `None`: allowed. `Some`: refused with this denial.
    pub denial: Option<Denial>,
    /// `x-hipaa-*` request headers to set (identity for the upstream and the audit filter).
    pub set_headers: Vec<(&'static str, String)>,
    /// Methods of the matched route, for a 405's `Allow` header.
    pub allowed_methods: Vec<String>,
    pub cache: CacheOutcome,
    /// A token named an unknown `kid`: the shell asks for a (rate-limited) refetch of the
    /// remote key sets, in case the identity provider rotated its keys.
    pub refetch_jwks: bool,
    pub emergency: Option<String>,
    /// The session needs the mesh-wide view (`identity.session.authority`; first sight here or
    /// locally idle): with no denial, the shell pauses the request, asks the authority and
    /// settles it with [`authority::SessionCheck::settle`]. A denial decided later in the
    /// request (role, patient) wins and no call is made.
    pub consult: Option<authority::SessionCheck>,
}

impl Verdict {
    fn new(route: &RouteMatch<'_>) -> Verdict {
        Verdict {
            route: route.name().to_string(),
            denial: None,
            set_headers: Vec::new(),
            allowed_methods: route.allowed_methods(),
            cache: CacheOutcome::NotUsed,
            refetch_jwks: false,
            emergency: None,
            consult: None,
        }
    }

    fn deny(mut self, denial: Denial) -> Verdict {
        self.denial = Some(denial);
        self
    }

    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}

/// Keys per provider, the verified-token cache and the failed-signature budget of one worker VM.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: Vec<Option<KeySet>>,
    cache: TokenCache,
    failures: FailureBudget,
    /// What the session authority's revocation list says (pulled on the root's timer).
    pub revocations: authority::RevocationSet,
    /// Sessions the authority ended, refused here without a new call.
    pub ended: authority::EndedSessions,
}

impl Authenticator {
    pub fn new(policy: &Policy) -> Authenticator {
        Authenticator {
            keys: policy.inline_keys.clone(),
            cache: TokenCache::new(policy.spec.identity.token_cache_size as usize),
            failures: FailureBudget::new(policy.spec.identity.signature_failure_budget),
            revocations: authority::RevocationSet::new(),
            ended: authority::EndedSessions::default(),
        }
    }

    /// New keys for a provider (a JWKS fetch, or the set another worker fetched). A key
    /// removed from the set (or changed: other material, algorithm or `kid`) stops
    /// authenticating at once: the identities it verified leave the cache. Identities verified
    /// by a key still in the set stay cached, so a refresh that changes nothing (the usual
    /// case, every `refreshSeconds`) makes no session pay a signature check again, nor spend
    /// the failed-signature budget's time while a forged-token flood is being shed.
    pub fn set_keys(&mut self, provider: usize, keys: KeySet) {
        let Some(slot) = self.keys.get_mut(provider) else {
            return;
        };
        if slot.as_ref().is_some_and(|old| old.same_keys(&keys)) {
            *slot = Some(keys);
            return;
        }
        self.cache.retain(|cached| {
            cached.provider != provider || cached.key.is_some_and(|k| keys.has_key(&k))
        });
        *slot = Some(keys);
    }

    pub fn has_keys(&self, provider: usize) -> bool {
        self.keys.get(provider).is_some_and(Option::is_some)
    }

    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    fn authenticate(
        &mut self,
        token: &str,
        identity: &Identity,
        envoy_payload: Option<&EnvoyPayload>,
        now: u64,
    ) -> (Result<VerifiedToken, TokenError>, CacheOutcome) {
        let key = self.cache.key(token);
        if let Some(hit) = self.cache.get(&key, token, now) {
            // Envoy's proof is asked for on every request, cached or not.
            let by_envoy = identity
                .providers
                .get(hit.provider)
                .is_some_and(|p| p.verification == Verification::Envoy);
            if by_envoy {
                if let Err(err) = envoy::check(envoy_payload, hit) {
                    return (Err(err), CacheOutcome::Hit);
                }
            }
            return (Ok(hit.clone()), CacheOutcome::Hit);
        }
        let providers: Vec<ProviderKeys<'_>> = identity
            .providers
            .iter()
            .zip(&self.keys)
            .map(|(provider, keys)| ProviderKeys {
                provider,
                keys: keys.as_ref(),
            })
            .collect();
        let failures = &mut self.failures;
        let result =
            jwt::verify_token_with(token, identity, &providers, now, envoy_payload, &mut || {
                failures.allows_check(now)
            });
        if result == Err(TokenError::BadSignature) {
            self.failures.spend(now);
        }
        if let Ok(verified) = &result {
            let skew = identity
                .providers
                .get(verified.provider)
                .map_or(0, |p| p.clock_skew_seconds);
            self.cache.insert(
                key,
                token,
                verified.clone(),
                verified.exp.saturating_add(skew),
                now,
            );
        }
        (result, CacheOutcome::Miss)
    }
}

/// Decide one request.
pub fn decide(
    facts: &RequestFacts,
    policy: &Policy,
    auth: &mut Authenticator,
    sessions: &mut dyn SessionStore,
    now: u64,
) -> Verdict {
    let route = policy.routes.find(&facts.method, &facts.path);
    let mut verdict = Verdict::new(&route);
    // Spelling refusals, unlisted methods and `unmatchedRoutes: deny` come before identity.
    if let Some(denial) = route.denial() {
        return verdict.deny(denial);
    }
    if let RouteMatch::Route(r) = route {
        if r.class == RouteClass::Public {
            return verdict;
        }
    }

    // Without a clock no expiry, idle or absolute check means anything: a cached identity
    // or a live session would pass unchecked. Fail closed before anything is looked up.
    if now == 0 {
        return verdict.deny(Denial::ClockUnavailable);
    }

    let token = match bearer_token(facts) {
        Ok(token) => token,
        Err(denial) => return verdict.deny(denial),
    };
    let identity = &policy.spec.identity;
    let (result, cache) = auth.authenticate(token, identity, facts.envoy_payload.as_ref(), now);
    verdict.cache = cache;
    let claims = match result {
        Ok(claims) => claims,
        Err(TokenError::SignatureShed) => return verdict.deny(Denial::VerificationShed),
        Err(err) => {
            verdict.refetch_jwks = err == TokenError::UnknownKid;
            return verdict.deny(Denial::InvalidToken(err.code()));
        }
    };

    // Unique user identification: a present, non-empty, printable subject.
    let subject = match claims.subject.as_deref() {
        Some(s) if !s.trim().is_empty() => s,
        _ => return verdict.deny(Denial::MissingSubject),
    };
    if !header_safe(subject) || !claims.roles.iter().chain(&claims.amr).all(|v| list_safe(v)) {
        return verdict.deny(Denial::InvalidToken("bad_claim_value"));
    }
    verdict
        .set_headers
        .push((headers::SUBJECT, subject.to_string()));
    verdict
        .set_headers
        .push((headers::ROLES, claims.roles.join(",")));
    verdict
        .set_headers
        .push((headers::AMR, claims.amr.join(",")));
    if let Some(sid) = claims.session.as_deref().filter(|s| header_safe(s)) {
        verdict
            .set_headers
            .push((headers::SESSION, sid.to_string()));
    }

    // Ended by an administrator (`hipaa-mesh session revoke`): refused before anything else
    // about the session is looked at. A lookup in this VM's copy of the list; no call.
    if auth.revocations.is_revoked(
        &claims.issuer,
        Some(subject),
        claims.session.as_deref(),
        authority::secs_to_ms(now),
    ) {
        return verdict.deny(Denial::SessionRevoked);
    }
    if is_shared_account(subject, identity) {
        return verdict.deny(Denial::SharedAccount);
    }
    if mfa_missing(&claims, identity) {
        return verdict.deny(Denial::MfaRequired);
    }
    let session = &identity.session;
    // The absolute timeout counts from the sign-in. `iat` is not the sign-in: every refreshed
    // token has a new one, so with `iat` a refreshing client is never logged off. On a PHI
    // route a token without `auth_time` is refused (RFC 9470: a step-up with `max_age` makes
    // the IdP include it), unless the policy accepts `iat` (`requireAuthTime: false`).
    let phi_route = route.class() == RouteClass::Phi;
    let signed_in_at = match claims.auth_time {
        Some(at) => at,
        None if phi_route && session.require_auth_time => {
            return verdict.deny(Denial::AuthTimeMissing {
                max_age: session.absolute_timeout_seconds,
            })
        }
        None => claims.iat,
    };
    if now > signed_in_at.saturating_add(session.absolute_timeout_seconds) {
        return verdict.deny(Denial::AuthenticationTooOld {
            max_age: session.absolute_timeout_seconds,
        });
    }
    if session.idle_timeout_seconds > 0 {
        let Some(sid) = claims
            .session
            .as_deref()
            .filter(|s| !s.is_empty() && header_safe(s))
        else {
            return verdict.deny(Denial::MissingSession);
        };
        let key = SessionKey::new(&claims.issuer, sid, session::slots_for(session.max_tracked));
        match (
            sessions.touch_seen(&key, now, session.idle_timeout_seconds),
            &session.authority,
        ) {
            // The common path: active here, no call.
            (Ok((SessionState::Active, _)), _) => {}
            // Without an authority: the lone Envoy's view.
            (Ok((SessionState::New, _)), None) => {}
            (Ok((state, last_seen)), Some(_)) => {
                // The sign-in: `auth_time`, or `iat` where the policy accepts it.
                let auth_time_ms = claims
                    .auth_time
                    .or((!session.require_auth_time).then_some(claims.iat))
                    .map(authority::secs_to_ms);
                if let Some(denial) = auth.ended.get(key.id(), auth_time_ms) {
                    return verdict.deny(denial);
                }
                verdict.consult = Some(authority::SessionCheck {
                    key,
                    view: state.into(),
                    issuer: claims.issuer.clone(),
                    session: sid.to_string(),
                    subject: subject.to_string(),
                    local_last_seen_ms: last_seen.map(authority::secs_to_ms),
                    auth_time_ms,
                });
            }
            (Ok((SessionState::Expired, _)), None) | (Err(SessionStoreUnavailable), _) => {
                return verdict.deny(Denial::SessionIdle)
            }
        }
    }

    // The patient the request names, by the function the audit record uses: an id the
    // upstream could read as another patient than the record names is refused (400).
    if let Some(src) = route.route().and_then(|r| r.patient.as_ref()) {
        let header = |name: &str| {
            let values: Vec<&str> = facts
                .patient_headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        if let Err(code) = crate::patient::resolve(src, &facts.path, header) {
            return verdict.deny(Denial::PatientAmbiguous(code));
        }
    }

    let route = route.route();
    if route.is_some_and(|r| r.soft_delete_only) && facts.method == "DELETE" {
        return verdict.deny(Denial::HardDelete);
    }

    // Break-glass: only ever widens `allowRoles`, for an eligible role with a listed reason.
    if let Some(reason) = facts.break_glass.as_deref() {
        let allowed = identity.break_glass.as_ref().is_some_and(|bg| {
            bg.reason_codes.iter().any(|c| c == reason)
                && claims.roles.iter().any(|r| bg.eligible_roles.contains(r))
        });
        if !allowed {
            return verdict.deny(Denial::BreakGlassRefused);
        }
        verdict
            .set_headers
            .push((headers::BREAK_GLASS, reason.to_string()));
        verdict.emergency = Some(reason.to_string());
        return verdict;
    }
    let allow_roles = route.map(|r| r.allow_roles.as_slice()).unwrap_or_default();
    if !allow_roles.is_empty() && !claims.roles.iter().any(|r| allow_roles.contains(r)) {
        return verdict.deny(Denial::RoleNotAllowed);
    }
    verdict
}

/// Exactly one `Authorization: Bearer <token>` and no token in the URL (RFC 6750 2, 3.1).
fn bearer_token(facts: &RequestFacts) -> Result<&str, Denial> {
    let in_query = crate::routes::split_query(&facts.path).1.is_some_and(|q| {
        q.split('&')
            .any(|p| p.split('=').next() == Some("access_token"))
    });
    match facts.authorization.as_slice() {
        [] if in_query => Err(Denial::MultipleCredentials),
        [] => Err(Denial::MissingToken),
        [_] if in_query => Err(Denial::MultipleCredentials),
        // Hosts may join repeated headers with a comma; a JWT never contains one.
        [value] if value.contains(',') => Err(Denial::MultipleCredentials),
        [value] => {
            let value = value.trim();
            let (scheme, token) = value
                .split_once(' ')
                .ok_or(Denial::MalformedAuthorization)?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
                return Err(Denial::MalformedAuthorization);
            }
            Ok(token)
        }
        _ => Err(Denial::MultipleCredentials),
    }
}

fn is_shared_account(subject: &str, identity: &Identity) -> bool {
    let lower = subject.to_lowercase();
    let shared = &identity.shared_accounts;
    shared
        .deny_subjects
        .iter()
        .any(|s| s.to_lowercase() == lower)
        || shared
            .deny_subject_prefixes
            .iter()
            .any(|p| lower.starts_with(&p.to_lowercase()))
}

fn mfa_missing(claims: &VerifiedToken, identity: &Identity) -> bool {
    let mfa = &identity.mfa;
    let needs = claims
        .roles
        .iter()
        .any(|r| mfa.required_for_roles.contains(r));
    needs && !claims.amr.iter().any(|a| mfa.accepted_amr.contains(a))
}

/// A value that can travel in an HTTP header unchanged.
fn header_safe(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A value that can be one item of a comma-separated header.
fn list_safe(v: &str) -> bool {
    header_safe(v) && !v.contains(',')
}

#[cfg(test)]
mod envoy_tests;
#[cfg(test)]
mod tests;
