//! The CLI's one client for the collector's operator API (`--collector URL`): reads of the trail,
//! alerts, incidents, sessions. Every call carries the operator's bearer token, taken from
//! `--token-file` or `$HIPAA_AUDIT_TOKEN`; the token is never printed, and an answer's body is
//! shown only as the collector's fixed error text.

use std::path::Path;
use std::time::Duration;

use hipaa_collector::read_auth::ENV_READER_TOKEN;
use serde_json::Value;

/// How long one call may take before the CLI gives up (the collector answers reads in well under).
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error body echoed to the operator.
const MAX_ERROR_BODY: usize = 512;

/// A collector's operator API and the credential to use it.
pub struct CollectorClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for CollectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The operator's token: the file's first line when given, else `$HIPAA_AUDIT_TOKEN`.
pub fn operator_token(token_file: Option<&Path>) -> Result<String, String> {
    let token = match token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("reading the token file {}: {e}", path.display()))?,
        None => std::env::var(ENV_READER_TOKEN).map_err(|_| {
            format!(
                "the collector needs an operator token: --token-file FILE or ${ENV_READER_TOKEN}"
            )
        })?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err("the operator token is empty".to_string());
    }
    Ok(token)
}

impl CollectorClient {
    /// A client for `base` (`http://host:port` or `https://...`), authenticating with `token`.
    pub fn new(base: &str, token: String) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "--collector must be an http:// or https:// URL, not {base:?}"
            ));
        }
        let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
        Ok(Self { base, token, agent })
    }

    /// From a `--collector` URL and an optional `--token-file`.
    pub fn from_args(base: &str, token_file: Option<&Path>) -> Result<Self, String> {
        Self::new(base, operator_token(token_file)?)
    }

    /// `GET path?query` (query pairs percent-encoded by the client), the JSON answer.
    pub fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        self.get_json_with_header(path, query, "x-none")
            .map(|(v, _)| v)
    }

    /// `GET path?query`, the JSON answer and the value of one response header (a paging cursor).
    pub fn get_json_with_header(
        &self,
        path: &str,
        query: &[(&str, &str)],
        header: &str,
    ) -> Result<(Value, Option<String>), String> {
        let mut req = self.request("GET", path);
        for (k, v) in query {
            req = req.query(k, v);
        }
        match req.call() {
            Ok(resp) => {
                let value = resp.header(header).map(str::to_string);
                Ok((Self::answer(path, Ok(resp))?, value))
            }
            Err(e) => Self::answer(path, Err(e)).map(|v| (v, None)),
        }
    }

    /// `GET path`, the status and JSON answer, where `also_ok` lists non-2xx statuses whose body
    /// is an answer rather than a refusal (`GET /v1/verify` answers 409 with the report).
    pub fn get_json_status(&self, path: &str, also_ok: &[u16]) -> Result<(u16, Value), String> {
        match self.request("GET", path).call() {
            Ok(resp) => {
                let status = resp.status();
                Ok((status, Self::answer(path, Ok(resp))?))
            }
            Err(ureq::Error::Status(code, resp)) if also_ok.contains(&code) => {
                Ok((code, Self::answer(path, Ok(resp))?))
            }
            Err(e) => Self::answer(path, Err(e)).map(|v| (0, v)),
        }
    }

    /// `POST path` with a JSON body, the JSON answer (`null` for an empty body).
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        let req = self
            .request("POST", path)
            .set("content-type", "application/json");
        Self::answer(path, req.send_string(&body.to_string()))
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{}", self.base, path))
            .set("authorization", &format!("Bearer {}", self.token))
            .set("accept", "application/json")
    }

    fn answer(path: &str, result: Result<ureq::Response, ureq::Error>) -> Result<Value, String> {
        match result {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| format!("reading the collector's answer to {path}: {e}"))?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text)
                    .map_err(|e| format!("the collector's answer to {path} is not JSON: {e}"))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                let mut end = body.len().min(MAX_ERROR_BODY);
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                let shown = body.get(..end).unwrap_or_default().trim();
                Err(format!("the collector refused {path}: {code} {shown}"))
            }
            Err(e) => Err(format!(
                "the collector could not be reached for {path}: {e}"
            )),
        }
    }
}
