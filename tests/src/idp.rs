//! The demo identity provider of `hipaa-mesh dev`: key pairs made at test time and tokens
//! minted by the CLI, plus hand-made malformed tokens for the attack cases.

use crate::process::{wait_for_port, Proc};
use crate::{cli_bin, free_port, TempDir};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::process::Command;
use std::time::Duration;

pub const ISSUER: &str = "https://idp.demo.local";
pub const AUDIENCE: &str = "ehr-api";

/// A key folder written by `hipaa-mesh dev keys`.
pub struct Keys {
    pub dir: TempDir,
}

impl Keys {
    pub fn generate() -> Keys {
        let dir = TempDir::new("keys");
        let out = Command::new(cli_bin())
            .args(["dev", "keys", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Keys { dir }
    }

    pub fn jwks(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jwks.json")).unwrap()
    }

    /// `hipaa-mesh dev token --keys DIR <args>`.
    pub fn token(&self, args: &[&str]) -> String {
        let out = Command::new(cli_bin())
            .args(["dev", "token", "--keys"])
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A clinician with MFA and a session id: the token that should pass.
    pub fn clinician(&self, sub: &str) -> String {
        self.token(&[
            "--sub",
            sub,
            "--roles",
            "clinician",
            "--amr",
            "pwd,otp",
            "--sid",
            &format!("sid-{sub}"),
        ])
    }
}

/// Split a compact JWS into its decoded header and payload JSON and the signature segment.
pub fn decode(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    let h = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let p = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    (h, p, parts[2].to_string())
}

/// Assemble a compact JWS from raw header and payload text and a signature segment.
pub fn assemble(header: &str, payload: &str, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header),
        B64.encode(payload),
        signature
    )
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The sample upstream (`hipaa-mesh dev upstream`), which echoes each request as JSON.
pub struct Upstream {
    pub port: u16,
    _proc: Proc,
    _dir: TempDir,
}

impl Upstream {
    pub fn start() -> Upstream {
        let dir = TempDir::new("upstream");
        let port = free_port();
        let mut cmd = Command::new(cli_bin());
        cmd.args(["dev", "upstream", "--listen", &format!("127.0.0.1:{port}")]);
        let proc = Proc::spawn("upstream", cmd, dir.path().join("upstream.log"));
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "upstream did not start"
        );
        Upstream {
            port,
            _proc: proc,
            _dir: dir,
        }
    }
}
