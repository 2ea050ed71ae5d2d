//! Denials: one enum variant per reason, each mapping to one status code, one OAuth error
//! code and one audit reason. The response never echoes the token.
//!
//! [`LocalReply::refusal`] is the one shape of every hipaa-mesh refusal: authn's and audit's
//! [`Denial`]s here and transport's `crate::transport::Denial` are both answered through it.

use crate::headers;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    // 400
    /// More than one Authorization header, or a token in the URL as well.
    MultipleCredentials,
    /// The route's patient identifier is repeated (`patient_repeated`) or cannot be read as
    /// one identifier (`patient_invalid`): the audit record could not name the patient the
    /// upstream serves (`crate::patient`).
    PatientAmbiguous(&'static str),
    /// A method that is not an upper-case token (`delete` over HTTP/2).
    MethodNotCanonical,
    /// A path not in normal form (`..`, `//`, `%2e`, `%2f`, a case variant of a route's path).
    PathNotCanonical,
    /// A `;` path parameter on a route without `allowPathParameters`, or a dot segment behind one.
    PathParameter,
    // 401 invalid_token
    MissingToken,
    MalformedAuthorization,
    /// The token failed verification; the code says why (`TokenError::code`).
    InvalidToken(&'static str),
    MissingSubject,
    MissingSession,
    SessionIdle,
    /// The session or its user is on the session authority's revocation list
    /// (`hipaa-mesh session revoke`; `crate::authn::authority`).
    SessionRevoked,
    // 401 insufficient_user_authentication (RFC 9470 step-up)
    MfaRequired,
    AuthenticationTooOld {
        max_age: u64,
    },
    /// A PHI route and a token without `auth_time` (`identity.session.requireAuthTime`):
    /// the absolute timeout cannot be enforced, since `iat` is renewed by every refresh.
    AuthTimeMissing {
        max_age: u64,
    },
    // 403
    SharedAccount,
    RoleNotAllowed,
    BreakGlassRefused,
    RouteDenied,
    // 405
    HardDelete,
    /// Routes cover the path but none lists the method.
    MethodNotAllowed,
    /// A new token arrived while the failed-signature budget was spent (a forged-token flood):
    /// not checked, to be retried. 429 (RFC 6585) rather than 503: the flood is traffic, not a
    /// failure of the mesh, and a client backs off on either.
    VerificationShed,
    // 503
    AuditUnavailable,
    /// The session authority was needed (first sight, or locally idle) and did not answer, and
    /// `identity.session.authority.onUnavailable` is `deny`.
    SessionAuthorityUnavailable,
    /// The host's clock is unavailable (reads 0): no expiry, idle or absolute check can be
    /// made, so nothing authenticated passes.
    ClockUnavailable,
    /// The filter has no valid configuration (its root context refused the policy or a key):
    /// it refuses every request rather than letting one through unchecked.
    Unconfigured,
}

/// What a filter shell sends back: status, headers and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl LocalReply {
    /// A refusal, whichever filter or stage refused: the JSON body (the shared `error`
    /// category, a fixed description, the request id), never cached, and — when `reason` is
    /// given — the specific reason in `x-hipaa-denial` (transport's contract: the audit filter
    /// believes it on a local reply). authn gives none: its body says only "the access token
    /// is invalid" so that a client learns nothing about why a forged token failed; the
    /// reason reaches the record through the request's annotations.
    pub fn refusal(
        status: u32,
        error: &str,
        description: &str,
        reason: Option<&str>,
        request_id: &str,
    ) -> LocalReply {
        let body = json!({
            "error": error,
            "error_description": description,
            "request_id": request_id,
        })
        .to_string();
        let mut headers = vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ];
        if let Some(reason) = reason {
            headers.push((headers::DENIAL.into(), reason.into()));
        }
        LocalReply {
            status,
            headers,
            body,
        }
    }

    fn with_header(mut self, name: &str, value: String) -> LocalReply {
        self.headers.push((name.into(), value));
        self
    }
}

const REALM: &str = "hipaa-mesh";

impl Denial {
    pub fn status(&self) -> u32 {
        match self {
            Denial::MultipleCredentials
            | Denial::PatientAmbiguous(_)
            | Denial::MethodNotCanonical
            | Denial::PathNotCanonical
            | Denial::PathParameter => 400,
            Denial::MissingToken
            | Denial::MalformedAuthorization
            | Denial::InvalidToken(_)
            | Denial::MissingSubject
            | Denial::MissingSession
            | Denial::SessionIdle
            | Denial::SessionRevoked
            | Denial::MfaRequired
            | Denial::AuthenticationTooOld { .. }
            | Denial::AuthTimeMissing { .. } => 401,
            Denial::SharedAccount
            | Denial::RoleNotAllowed
            | Denial::BreakGlassRefused
            | Denial::RouteDenied => 403,
            Denial::HardDelete | Denial::MethodNotAllowed => 405,
            Denial::VerificationShed => 429,
            Denial::AuditUnavailable
            | Denial::SessionAuthorityUnavailable
            | Denial::ClockUnavailable
            | Denial::Unconfigured => 503,
        }
    }

    /// The OAuth-style error code in the body (and in WWW-Authenticate for 401s).
    pub fn error(&self) -> &'static str {
        match self {
            d if d.status() == 400 => "invalid_request",
            Denial::MfaRequired
            | Denial::AuthenticationTooOld { .. }
            | Denial::AuthTimeMissing { .. } => "insufficient_user_authentication",
            d if d.status() == 401 => "invalid_token",
            Denial::HardDelete | Denial::MethodNotAllowed => "method_not_allowed",
            Denial::AuditUnavailable
            | Denial::SessionAuthorityUnavailable
            | Denial::VerificationShed
            | Denial::ClockUnavailable
            | Denial::Unconfigured => "temporarily_unavailable",
            _ => "access_denied",
        }
    }

    /// The reason recorded in the audit record and counted in stats.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::MultipleCredentials => "multiple_credentials",
            Denial::PatientAmbiguous(code) => code,
            Denial::MethodNotCanonical => "method_not_canonical",
            Denial::PathNotCanonical => "path_not_canonical",
            Denial::PathParameter => "path_parameter",
            Denial::MissingToken => "missing_token",
            Denial::MalformedAuthorization => "malformed_authorization",
            Denial::InvalidToken(code) => code,
            Denial::MissingSubject => "missing_subject",
            Denial::MissingSession => "missing_session",
            Denial::SessionIdle => "session_idle",
            Denial::SessionRevoked => "session_revoked",
            Denial::MfaRequired => "mfa_required",
            Denial::AuthenticationTooOld { .. } => "session_absolute",
            Denial::AuthTimeMissing { .. } => "auth_time_missing",
            Denial::SharedAccount => "shared_account",
            Denial::RoleNotAllowed => "role_not_allowed",
            Denial::BreakGlassRefused => "break_glass_refused",
            Denial::RouteDenied => "route_denied",
            Denial::HardDelete => "hard_delete",
            Denial::MethodNotAllowed => "method_not_allowed",
            Denial::AuditUnavailable => "audit_unavailable",
            Denial::SessionAuthorityUnavailable => "session_authority_unavailable",
            Denial::VerificationShed => "verification_shed",
            Denial::ClockUnavailable => "clock_unavailable",
            Denial::Unconfigured => "filter_unconfigured",
        }
    }

    /// A fixed, human sentence: never a claim value, never the token.
    pub fn description(&self) -> &'static str {
        match self {
            Denial::MultipleCredentials => "more than one access token in the request",
            Denial::PatientAmbiguous("patient_repeated") => {
                "the patient identifier is given more than once"
            }
            Denial::PatientAmbiguous(_) => "the patient identifier is not a single valid id",
            Denial::MethodNotCanonical => "the request method must be an upper-case token",
            Denial::PathNotCanonical => "the request path is not in normal form",
            Denial::PathParameter => "path parameters (`;`) are not accepted on this route",
            Denial::MissingToken => "a bearer access token is required",
            Denial::MalformedAuthorization => "the Authorization header is not a Bearer token",
            Denial::InvalidToken("expired") => "the access token has expired",
            Denial::InvalidToken("keys_not_loaded") => {
                "the identity provider's keys are not available yet"
            }
            Denial::InvalidToken(_) => "the access token is invalid",
            Denial::MissingSubject => "the access token names no user",
            Denial::MissingSession => "the access token carries no session id",
            Denial::SessionIdle => "the session ended after inactivity; sign in again",
            Denial::SessionRevoked => "this session's access has been ended by an administrator",
            Denial::MfaRequired => "multi-factor authentication is required for this role",
            Denial::AuthenticationTooOld { .. } => "the sign-in is too old; sign in again",
            Denial::AuthTimeMissing { .. } => {
                "the access token does not say when the user signed in (auth_time); sign in again"
            }
            Denial::SharedAccount => "shared or generic accounts may not access PHI",
            Denial::RoleNotAllowed => "your role may not use this route",
            Denial::BreakGlassRefused => {
                "emergency access refused: role or reason code not allowed"
            }
            Denial::RouteDenied => "this route is not open",
            Denial::HardDelete => "records on this route may only be soft-deleted",
            Denial::MethodNotAllowed => "this method is not allowed on this path",
            Denial::AuditUnavailable => "the audit trail cannot record this request right now",
            Denial::SessionAuthorityUnavailable => {
                "the session cannot be checked right now; retry shortly"
            }
            Denial::VerificationShed => "too many invalid tokens lately; retry shortly",
            Denial::ClockUnavailable => "the proxy's clock is unavailable; retry shortly",
            Denial::Unconfigured => "this filter has no valid policy; the request is refused",
        }
    }

    fn www_authenticate(&self) -> Option<String> {
        match self {
            Denial::MissingToken => Some(format!("Bearer realm=\"{REALM}\"")),
            Denial::AuthenticationTooOld { max_age } | Denial::AuthTimeMissing { max_age } => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_user_authentication\", error_description=\"{}\", max_age={max_age}",
                self.description()
            )),
            d if d.status() == 401 => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"{}\", error_description=\"{}\"",
                d.error(),
                d.description()
            )),
            Denial::MultipleCredentials => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_request\""
            )),
            _ => None,
        }
    }

    /// The local reply for this denial. `allow` lists the methods for a 405.
    pub fn reply(&self, request_id: &str, allow: &[String]) -> LocalReply {
        let mut reply = LocalReply::refusal(
            self.status(),
            self.error(),
            self.description(),
            None,
            request_id,
        );
        if let Some(challenge) = self.www_authenticate() {
            reply = reply.with_header("www-authenticate", challenge);
        }
        if matches!(self, Denial::HardDelete | Denial::MethodNotAllowed) {
            reply = reply.with_header("allow", allow.join(", "));
        }
        if matches!(
            self,
            Denial::AuditUnavailable
                | Denial::SessionAuthorityUnavailable
                | Denial::VerificationShed
                | Denial::ClockUnavailable
        ) {
            reply = reply.with_header("retry-after", "1".into());
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a LocalReply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_unconfigured_filter_refuses_with_503_and_says_why() {
        let r = Denial::Unconfigured.reply("rid-9", &[]);
        assert_eq!(r.status, 503);
        assert_eq!(Denial::Unconfigured.reason(), "filter_unconfigured");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"], "temporarily_unavailable");
        assert_eq!(v["request_id"], "rid-9");
    }

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        let r = Denial::MissingToken.reply("rid-1", &[]);
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"hipaa-mesh\"")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["request_id"], "rid-1");
    }

    #[test]
    fn invalid_token_challenge_names_the_error() {
        let r = Denial::InvalidToken("bad_signature").reply("r", &[]);
        assert_eq!(r.status, 401);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
        assert_eq!(
            Denial::InvalidToken("bad_signature").reason(),
            "bad_signature"
        );
    }

    #[test]
    fn step_up_challenges_follow_rfc_9470() {
        let r = Denial::MfaRequired.reply("r", &[]);
        assert_eq!(r.status, 401);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_user_authentication\""));
        let r = Denial::AuthenticationTooOld { max_age: 43200 }.reply("r", &[]);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .ends_with("max_age=43200"));
    }

    #[test]
    fn status_codes_per_contract() {
        assert_eq!(Denial::MultipleCredentials.status(), 400);
        for d in [
            Denial::SharedAccount,
            Denial::RoleNotAllowed,
            Denial::BreakGlassRefused,
            Denial::RouteDenied,
        ] {
            assert_eq!(d.status(), 403, "{d:?}");
            assert_eq!(d.error(), "access_denied");
            assert!(d
                .reply("r", &[])
                .headers
                .iter()
                .all(|(k, _)| k != "www-authenticate"));
        }
        let r = Denial::HardDelete.reply("r", &["GET".into(), "PUT".into()]);
        assert_eq!(r.status, 405);
        assert_eq!(header(&r, "allow"), Some("GET, PUT"));
        assert_eq!(Denial::AuditUnavailable.status(), 503);
    }

    #[test]
    fn no_reply_is_cached_and_none_tells_a_client_why_its_token_failed() {
        for d in [
            Denial::SessionIdle,
            Denial::InvalidToken("bad_signature"),
            Denial::InvalidToken("unknown_kid"),
            Denial::AuditUnavailable,
        ] {
            let r = d.reply("r", &[]);
            assert_eq!(header(&r, "cache-control"), Some("no-store"), "{d:?}");
            assert_eq!(header(&r, "content-type"), Some("application/json"));
            assert_eq!(
                header(&r, "x-hipaa-denial"),
                None,
                "{d:?}: the reason is the record's"
            );
            assert!(!r.body.contains(d.reason()) || d.reason() == "session_idle");
        }
        let r = Denial::AuditUnavailable.reply("r", &[]);
        assert_eq!(header(&r, "retry-after"), Some("1"));
    }

    #[test]
    fn body_is_exactly_the_contract() {
        let r = Denial::RoleNotAllowed.reply("abc", &[]);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["error", "error_description", "request_id"]);
    }
}
