//! `curl` for the TLS cases (versions, client certificates, handshakes): a reply, or the exit
//! code when no HTTP response came back.

use crate::TempDir;
use serde_json::Value;
use std::process::Command;

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The sample upstream's echo of a request header it received.
    pub fn echoed(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(String::from)
    }

    /// A refusal with this status and reason: the body's `error` is the shared category, the
    /// specific reason travels in `x-hipaa-denial`.
    pub fn assert_denied(&self, status: u16, reason: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        let category = match status {
            413 => "request_too_large",
            503 => "temporarily_unavailable",
            _ => "access_denied",
        };
        assert_eq!(body["error"], category, "{body}");
        assert_eq!(self.header("x-hipaa-denial"), Some(reason), "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        assert!(
            body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{body}"
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// The URL base for a loopback port and the curl arguments to reach it: `https://` with the
/// test PKI's CA and client certificate when the port is registered as TLS
/// ([`crate::tls::register`]), else `http://`.
pub fn base(port: u16) -> (String, Vec<String>) {
    match crate::tls::client_for(port) {
        None => (format!("http://127.0.0.1:{port}"), Vec::new()),
        Some(client) => {
            let pki = crate::tls::pki();
            let mut args = vec!["--cacert".to_string(), pki.ca().display().to_string()];
            if client == crate::tls::Client::Mtls {
                args.extend([
                    "--cert".to_string(),
                    pki.cert().display().to_string(),
                    "--key".to_string(),
                    pki.key().display().to_string(),
                ]);
            }
            (format!("https://127.0.0.1:{port}"), args)
        }
    }
}

/// Run curl; Err(exit code, stderr) when no HTTP response came back (e.g. a failed handshake).
pub fn curl(args: &[&str]) -> Result<Reply, (i32, String)> {
    let dir = TempDir::new("curl");
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "15", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl is needed for the transport tests (make setup installs it)");
    if !out.status.success() {
        return Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into(),
        ));
    }
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let head = std::fs::read_to_string(&head).unwrap_or_default();
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    })
}
