//! `hipaa-mesh session revoke | list-revoked` against a real `hipaa-mesh collector` (SQLite),
//! with an operator token from `hipaa-mesh dev token`: the revocation is put in force, listed,
//! recorded in the ledger, and `audit verify` covers it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hipaa-mesh");
const ISS: &str = "https://auditors.cli.test";
const HMAC: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SESSION_KEY: &str = "sa1:2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";

struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HIPAA_AUDIT_HMAC_KEY", HMAC.to_string()),
        (
            "HIPAA_AUDIT_ENCRYPTION_KEY_FILE",
            dir.join("at-rest.key").display().to_string(),
        ),
        ("HIPAA_SESSION_AUTHORITY_KEY", SESSION_KEY.to_string()),
    ]
}

fn run(args: &[&str], envs: &[(&str, String)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("HIPAA_AUDIT_TOKEN")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn session_revoke_against_a_real_collector() {
    let dir = Temp(std::env::temp_dir().join(format!("hipaa-session-cli-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("at-rest.key"), "07".repeat(32)).unwrap();
    let keys = dir.0.join("keys");
    let (code, _, err) = run(&["dev", "keys", "--out", keys.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let token_for = |roles: &str| {
        let (code, out, err) = run(
            &[
                "dev",
                "token",
                "--keys",
                keys.to_str().unwrap(),
                "--alg",
                "EdDSA",
                "--iss",
                ISS,
                "--aud",
                "hipaa-audit",
                "--sub",
                "officer-jane",
                "--roles",
                roles,
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let db = format!("sqlite:{}", dir.0.join("audit.db").display());
    let mut child = Command::new(BIN)
        .args(["collector", "--listen", "127.0.0.1:0", "--db", &db])
        .args(["--reader-jwks", keys.join("jwks.json").to_str().unwrap()])
        .args(["--reader-issuer", ISS, "--checkpoint-seconds", "0"])
        .envs(env(&dir.0).iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let collector = Running(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("session authority on"), "{line}");
    let url = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();

    let operator = vec![("HIPAA_AUDIT_TOKEN", token_for("auditor"))];
    // Without a token, and with a token lacking the role: refused, nothing revoked.
    let (code, _, err) = run(
        &[
            "session",
            "revoke",
            "--collector",
            &url,
            "--subject",
            "alice",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("operator token"), "{err}");
    let nurse = vec![("HIPAA_AUDIT_TOKEN", token_for("clinician"))];
    let (code, _, err) = run(
        &[
            "session",
            "revoke",
            "--collector",
            &url,
            "--subject",
            "alice",
        ],
        &nurse,
    );
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");
    // Exactly one of --subject and --session.
    let (code, _, _) = run(&["session", "revoke", "--collector", &url], &operator);
    assert_ne!(code, 0);

    let (code, out, err) = run(
        &[
            "session",
            "revoke",
            "--collector",
            &url,
            "--subject",
            "alice",
            "--issuer",
            "https://idp.example",
            "--reason",
            "laptop stolen",
        ],
        &operator,
    );
    assert_eq!(code, 0, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["revoked"]["target"], "subject");
    assert_eq!(answer["revoked"]["value"], "alice");
    assert!(answer["ledgerSeq"].as_i64().unwrap() >= 1);
    let (code, out, err) = run(
        &[
            "session",
            "revoke",
            "--collector",
            &url,
            "--session",
            "sid-9",
        ],
        &operator,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sid-9"));

    let (code, out, err) = run(&["session", "list-revoked", "--collector", &url], &operator);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = listed["revocations"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    assert_eq!(items[0]["value"], "alice");
    assert_eq!(items[0]["issuer"], "https://idp.example");
    assert_eq!(items[1]["target"], "session");

    // Both revocations are in the ledger, readable by kind, and the trail verifies.
    let (code, out, err) = run(
        &[
            "audit",
            "query",
            "--db",
            &db,
            "--format",
            "json",
            "--kind",
            "session-revocation",
        ],
        &env(&dir.0),
    );
    assert_eq!(code, 0, "{err}");
    let records: serde_json::Value = serde_json::from_str(&out).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 2, "{out}");
    assert_eq!(records[0]["sessionRevocation"]["reason"], "laptop stolen");
    assert_eq!(
        records[0]["sessionRevocation"]["by"]["subject"],
        "officer-jane"
    );
    drop(collector);
    let (code, out, err) = run(&["audit", "verify", "--db", &db], &env(&dir.0));
    assert_eq!(code, 0, "{out}{err}");
}
