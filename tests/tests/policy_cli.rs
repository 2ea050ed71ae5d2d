//! `hipaa-mesh policy check` runs exactly the filters' validation and lists every error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::{cli_bin, root, TempDir};
use std::process::Command;

fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(cli_bin())
        .args(["policy", "check"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn example_policies_are_valid() {
    let (code, out, err) = check(&root().join("policies/ehr-api.yaml"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ehr-api: valid"), "{out}");
}

#[test]
fn a_broken_policy_fails_with_every_error_and_its_key_path() {
    let dir = TempDir::new("policy");
    let text = std::fs::read_to_string(root().join("policies/ehr-api.yaml"))
        .unwrap()
        .replace("pathPrefix: /ai/risk", "pathPrefx: /ai/risk")
        .replace("minTlsVersion: TLSv1.2", "minTlsVersion: TLSv1.0")
        .replace(
            "algorithms: [RS256, ES256, EdDSA]",
            "algorithms: [RS256, none, HS256]",
        )
        .replace(
            "whenCollectorDown: failClosed",
            "whenCollectorDown: failOpen",
        );
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 1, "{err}");
    for expected in [
        "spec.routes[3].match.pathPrefx: unknown field `pathPrefx`, expected one of `path`, `pathPrefix`, `methods`",
        "spec.transport.minTlsVersion: unknown variant `TLSv1.0`, expected `TLSv1.2` or `TLSv1.3`",
        "spec.identity.providers[0].algorithms[1]: unknown variant `none`",
        "spec.identity.providers[0].algorithms[2]: unknown variant `HS256`",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("4 error(s)"), "{err}");
}

#[test]
fn semantic_errors_are_listed_together() {
    let dir = TempDir::new("policy");
    let text = std::fs::read_to_string(root().join("policies/ehr-api.yaml"))
        .unwrap()
        .replace(
            "whenCollectorDown: failClosed",
            "whenCollectorDown: failOpen",
        )
        .replace("clockSkewSeconds: 30", "clockSkewSeconds: 900");
    let path = dir.path().join("unsafe.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 1);
    assert!(err.contains("spec.audit.whenCollectorDown: `failOpen` needs an `exceptions` entry for `audit-delivery`"), "{err}");
    assert!(
        err.contains(
            "spec.identity.providers[0].clockSkewSeconds: 900 is above the maximum of 300"
        ),
        "{err}"
    );
}

#[test]
fn unreadable_and_non_yaml_files_are_clear_errors() {
    let (code, _, err) = check(std::path::Path::new("/no/such/policy.yaml"));
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /no/such/policy.yaml"), "{err}");
    let dir = TempDir::new("policy");
    let path = dir.path().join("garbage.yaml");
    std::fs::write(&path, "spec: [unclosed").unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 1);
    assert!(err.contains("not valid YAML"), "{err}");
}
