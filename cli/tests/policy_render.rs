//! `hipaa-mesh policy check | render | report` and `hipaa-mesh package` on the example
//! policies, with golden files for everything rendered (regenerate: `UPDATE_GOLDEN=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: [&str; 3] = ["ehr-api", "clinical-ai", "internal-api"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_hipaa-mesh"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hipaa-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stand-in modules with fixed bytes, so golden digests do not change with every build.
fn fake_wasm_dir() -> Temp {
    let dir = Temp::new("wasm");
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(b"hipaa_mesh test module");
    std::fs::write(dir.path().join("hipaa_mesh.wasm"), bytes).unwrap();
    dir
}

/// Compare with the golden file, or rewrite it when UPDATE_GOLDEN=1.
fn golden(rel: &str, actual: &str) {
    golden_at(&golden_dir().join(rel), actual);
}

fn golden_at(path: &Path, actual: &str) {
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered output at line {} (UPDATE_GOLDEN=1 rewrites it):\n--- golden\n{}\n--- rendered\n{}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("(end)"),
            actual.lines().nth(line).unwrap_or("(end)")
        );
    }
}

fn policy(name: &str) -> String {
    root()
        .join(format!("policies/{name}.yaml"))
        .to_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------- check

#[test]
fn every_example_policy_passes_check_with_the_safety_rules() {
    for name in EXAMPLES {
        let out = cli(&["policy", "check", &policy(name)]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(out.stdout.contains(": valid ("), "{}", out.stdout);
    }
}

/// The EHR example with one edit, which must fail `check` with `expected` (and only that).
fn broken(edit: impl Fn(String) -> String, expected: &str) {
    let dir = Temp::new("broken");
    let text = edit(std::fs::read_to_string(policy("ehr-api")).unwrap());
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, text).unwrap();
    let out = cli(&["policy", "check", path.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("1 error(s)"), "{}", out.stderr);
    assert!(
        out.stderr.contains(expected),
        "missing `{expected}` in:\n{}",
        out.stderr
    );
}

fn cut(text: String, from: &str, to: &str) -> String {
    let start = text.find(from).unwrap();
    let end = start + text[start..].find(to).unwrap();
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn check_refuses_a_policy_without_audit() {
    broken(
        |t| cut(t, "  audit:\n", "  transport:\n"),
        "spec.audit: is required: audit controls (164.312(b)) are a Required safeguard",
    );
}

#[test]
fn check_refuses_a_policy_without_break_glass() {
    broken(
        |t| cut(t, "    breakGlass:", "  routes:\n"),
        "spec.identity.breakGlass: is required: emergency access (164.312(a)(2)(ii))",
    );
}

#[test]
fn check_refuses_a_policy_without_shared_account_refusal() {
    broken(
        |t| cut(t, "    sharedAccounts:", "    mfa:"),
        "spec.identity.sharedAccounts: must list the shared or generic accounts",
    );
}

#[test]
fn check_refuses_mtls_off() {
    broken(
        |t| t.replace("requireMtls: true", "requireMtls: false"),
        "spec.transport.requireMtls: `false` switches mTLS off inside the mesh",
    );
}

#[test]
fn check_refuses_a_public_prefix_shadowing_a_phi_route() {
    broken(
        |t| t.replace("match: { path: /healthz }", "match: { pathPrefix: /fhir/Patient/ }"),
        "spec.routes[0].match: public route `health` matches `/fhir/Patient/`, a path of PHI route `patient-record` (spec.routes[2])",
    );
}

#[test]
fn check_refuses_a_public_route_after_a_phi_route_with_the_same_path() {
    broken(
        |t| {
            t.replace(
                "  unmatchedRoutes: deny",
                "    - name: risk-docs\n      match: { pathPrefix: /ai/risk }\n      public: true\n  unmatchedRoutes: deny",
            )
        },
        "spec.routes[4].match: public route `risk-docs` matches `/ai/risk`, a path of PHI route `risk-model` (spec.routes[3]): it is listed after it",
    );
}

#[test]
fn check_still_refuses_fail_open_without_an_exception() {
    broken(
        |t| {
            t.replace(
                "whenCollectorDown: failClosed",
                "whenCollectorDown: failOpen",
            )
        },
        "spec.audit.whenCollectorDown: `failOpen` needs an `exceptions` entry for `audit-delivery`",
    );
}

#[test]
fn check_still_refuses_clock_skew_over_300() {
    broken(
        |t| t.replace("clockSkewSeconds: 30", "clockSkewSeconds: 301"),
        "spec.identity.providers[0].clockSkewSeconds: 301 is above the maximum of 300",
    );
}

#[test]
fn check_accepts_an_addressable_safeguard_off_with_a_justified_exception() {
    let dir = Temp::new("exception");
    let text = std::fs::read_to_string(policy("ehr-api"))
        .unwrap()
        .replace("idleTimeoutSeconds: 900", "idleTimeoutSeconds: 0")
        + "  exceptions:\n    - safeguard: automatic-logoff\n      justification: \"Shared ICU wall displays; workstation locks after 5 minutes (policy IT-112)\"\n";
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, text).unwrap();
    let out = cli(&["policy", "check", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli(&["policy", "report", path.to_str().unwrap()]);
    assert!(
        out.stdout
            .contains("**exception** | `automatic-logoff`: Shared ICU wall displays"),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------- render

#[test]
fn render_istio_matches_the_golden_files() {
    let wasm = fake_wasm_dir();
    for name in EXAMPLES {
        let out_dir = Temp::new("render");
        let out = cli(&[
            "policy",
            "render",
            &policy(name),
            "--target",
            "istio",
            "--out",
            out_dir.s(),
            "--wasm-dir",
            wasm.s(),
        ]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        for file in ["wasmplugins.yaml", "security.yaml", "egress.yaml"] {
            let text = std::fs::read_to_string(out_dir.path().join(file)).unwrap();
            golden(&format!("istio/{name}/{file}"), &text);
        }
    }
}

/// envoy/NAME holds each example rendered with envoy/render-flags (scripts/render-examples.sh):
/// a fresh render must match it byte for byte.
#[test]
fn render_envoy_matches_the_committed_examples() {
    let flags_text = std::fs::read_to_string(root().join("envoy/render-flags")).unwrap();
    let flags: Vec<&str> = flags_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect();
    for name in EXAMPLES {
        let out_dir = Temp::new("render-envoy");
        let mut args = vec![
            "policy",
            "render",
            "--target",
            "envoy",
            "--out",
            out_dir.s(),
        ];
        let file = policy(name);
        args.push(&file);
        args.extend(&flags);
        let out = cli(&args);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        for file in ["envoy.yaml", "collector-sidecar.yaml"] {
            let text = std::fs::read_to_string(out_dir.path().join(file)).unwrap();
            golden_at(&root().join(format!("envoy/{name}/{file}")), &text);
        }
        // Keys never appear in a rendered config: the VMs read them from Envoy's environment.
        let envoy = std::fs::read_to_string(out_dir.path().join("envoy.yaml")).unwrap();
        assert!(envoy.contains("host_env_keys"), "{name}");
        assert!(!envoy.contains("key_values"), "{name}");
        // One key per purpose, in the one VM: the record-MAC key and the body keys the routes
        // use, never one no route uses.
        let blocks: Vec<&str> = envoy.split("- name: hipaa-").skip(1).collect();
        assert!(!blocks.is_empty(), "{name}");
        for block in blocks {
            let module = block.split_whitespace().next().unwrap_or_default();
            let keys: Vec<&str> = [
                "HIPAA_AUDIT_HMAC_KEY",
                "HIPAA_REQUEST_SIGNING_KEY",
                "HIPAA_RESPONSE_SIGNING_KEY",
            ]
            .into_iter()
            .filter(|k| block.contains(&format!("- {k}\n")))
            .collect();
            assert_eq!(module, "mesh", "{name}: one filter only");
            let expected: &[&str] = match name {
                "internal-api" => &[
                    "HIPAA_AUDIT_HMAC_KEY",
                    "HIPAA_REQUEST_SIGNING_KEY",
                    "HIPAA_RESPONSE_SIGNING_KEY",
                ],
                _ => &["HIPAA_AUDIT_HMAC_KEY", "HIPAA_RESPONSE_SIGNING_KEY"],
            };
            assert_eq!(keys, expected, "{name}: hipaa-{module}");
        }
    }
}

#[test]
fn render_envoy_pins_tls_and_mtls_to_the_collector() {
    let out_dir = Temp::new("render-envoy-tls");
    let out = cli(&[
        "policy",
        "render",
        &policy("clinical-ai"),
        "--target",
        "envoy",
        "--out",
        out_dir.s(),
        "--collector",
        "10.0.0.9:9443",
        "--wasm-dir",
        "no-such-dir",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let envoy = std::fs::read_to_string(out_dir.path().join("envoy.yaml")).unwrap();
    // clinical-ai asks for TLS 1.3 inbound; clusters carrying PHI never go below 1.2.
    assert!(
        envoy.contains("tls_minimum_protocol_version: TLSv1_3"),
        "{envoy}"
    );
    assert!(
        !envoy.contains("TLSv1_0") && !envoy.contains("TLSv1_1"),
        "{envoy}"
    );
    assert!(envoy.contains("spiffe://cluster.local/ns/hipaa-system/sa/audit-collector"));
    assert!(envoy.contains("traffic_direction: OUTBOUND"));
    assert!(envoy.contains("egress|api.llm-vendor.example"));
    // A failed VM is reloaded (with a backoff), never left open.
    assert!(envoy.contains("failure_policy: FAIL_RELOAD"));
    assert!(envoy.contains("reload_config:") && envoy.contains("base_interval: \"1s\""));
    assert!(!envoy.contains("FAIL_OPEN"));
    let sidecar = std::fs::read_to_string(out_dir.path().join("collector-sidecar.yaml")).unwrap();
    assert!(
        sidecar.contains("require_client_certificate: true"),
        "{sidecar}"
    );
    // Modules not built yet: a warning, not a failure.
    assert!(
        out.stderr
            .contains("no-such-dir/hipaa_mesh.wasm does not exist (yet)"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_rendered_plugin_is_one_and_pins_the_package_digest() {
    let wasm = fake_wasm_dir();
    let out_dir = Temp::new("render");
    let oci = Temp::new("oci");
    let out = cli(&[
        "policy",
        "render",
        &policy("clinical-ai"),
        "--target",
        "istio",
        "--out",
        out_dir.s(),
        "--wasm-dir",
        wasm.s(),
        "--registry",
        "registry.example/hipaa",
        "--tag",
        "1.2.3",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plugins = std::fs::read_to_string(out_dir.path().join("wasmplugins.yaml")).unwrap();
    let pkg = cli(&[
        "package",
        "--wasm-dir",
        wasm.s(),
        "--out",
        oci.s(),
        "--tag",
        "1.2.3",
    ]);
    assert_eq!(pkg.code, 0, "{}", pkg.stderr);
    // One image, one plugin: the combined filter (one VM per proxy thread).
    assert_eq!(plugins.matches("kind: WasmPlugin").count(), 1, "{plugins}");
    // `package` prints `hipaa-mesh sha256:<manifest digest> <wasm sha256>`.
    let images: Vec<&str> = pkg
        .stdout
        .lines()
        .filter(|l| l.starts_with("hipaa-"))
        .collect();
    assert_eq!(images.len(), 1, "{}", pkg.stdout);
    let digest = images[0]
        .strip_prefix("hipaa-mesh ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_start_matches("sha256:");
    let doc = plugins
        .split("---\n")
        .find(|d| d.contains("name: clinical-ai-hipaa-mesh\n"))
        .unwrap();
    let pinned = doc
        .lines()
        .find_map(|l| l.strip_prefix("  sha256: "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(pinned, digest, "{doc}");
    assert!(
        doc.contains("url: oci://registry.example/hipaa/hipaa-mesh:1.2.3\n"),
        "{doc}"
    );
    assert!(doc.contains("pluginName: hipaa-mesh\n"), "{doc}");
    assert!(doc.contains("phase: AUTHN\n") && doc.contains("failStrategy: FAIL_RELOAD\n"));
    assert!(doc.contains("mode: CLIENT_AND_SERVER"), "{doc}");
    assert!(!doc.contains("priority:"), "{doc}");
    // The keys come from the proxy's environment, never inline: the record-MAC key and the
    // body key clinical-ai's routes use (response signing), not the unused request key.
    let env = |name: &str| doc.contains(&format!("- name: {name}\n      valueFrom: HOST\n"));
    assert!(
        env("HIPAA_AUDIT_HMAC_KEY")
            && env("HIPAA_RESPONSE_SIGNING_KEY")
            && !env("HIPAA_REQUEST_SIGNING_KEY"),
        "{doc}"
    );
    // The layout on disk holds the manifest under that digest.
    let manifest = oci.path().join(format!("hipaa-mesh/blobs/sha256/{digest}"));
    assert!(manifest.is_file(), "{}", manifest.display());
    let index = std::fs::read_to_string(oci.path().join("hipaa-mesh/index.json")).unwrap();
    assert!(
        index.contains(&format!("\"digest\":\"sha256:{digest}\"")),
        "{index}"
    );
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\":\"1.2.3\""),
        "{index}"
    );
}

#[test]
fn render_says_which_module_is_missing() {
    let wasm = fake_wasm_dir();
    std::fs::remove_file(wasm.path().join("hipaa_mesh.wasm")).unwrap();
    let out_dir = Temp::new("render");
    let out = cli(&[
        "policy",
        "render",
        &policy("ehr-api"),
        "--target",
        "istio",
        "--out",
        out_dir.s(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("hipaa_mesh.wasm"), "{}", out.stderr);
    assert!(out.stderr.contains("make build"), "{}", out.stderr);
    let pkg = cli(&["package", "--wasm-dir", wasm.s(), "--out", out_dir.s()]);
    assert_eq!(pkg.code, 2);
    assert!(pkg.stderr.contains("hipaa_mesh.wasm"), "{}", pkg.stderr);
}

#[test]
fn render_refuses_an_unsafe_policy_and_a_policy_without_a_workload() {
    let wasm = fake_wasm_dir();
    let dir = Temp::new("unsafe");
    let text = std::fs::read_to_string(policy("ehr-api")).unwrap();
    let unsafe_path = dir.path().join("unsafe.yaml");
    std::fs::write(
        &unsafe_path,
        text.replace("requireMtls: true", "requireMtls: false"),
    )
    .unwrap();
    let out = cli(&[
        "policy",
        "render",
        unsafe_path.to_str().unwrap(),
        "--target",
        "istio",
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("spec.transport.requireMtls"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("out").exists());

    let no_workload = dir.path().join("no-workload.yaml");
    std::fs::write(
        &no_workload,
        text.replace("  workload:\n    matchLabels: { app: ehr-api }\n", ""),
    )
    .unwrap();
    let out = cli(&[
        "policy",
        "render",
        no_workload.to_str().unwrap(),
        "--target",
        "istio",
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("spec.workload.matchLabels is required"),
        "{}",
        out.stderr
    );
}

#[test]
fn render_warns_about_cluster_names_istio_does_not_have() {
    let wasm = fake_wasm_dir();
    let out_dir = Temp::new("render");
    let out = cli(&[
        "policy",
        "render",
        &policy("ehr-api"),
        "--target",
        "istio",
        "--out",
        out_dir.s(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains(
            "warning: spec.audit.collector.cluster `audit-collector` is not an Istio cluster name"
        ),
        "{}",
        out.stderr
    );
    let out = cli(&[
        "policy",
        "render",
        &policy("clinical-ai"),
        "--target",
        "istio",
        "--out",
        out_dir.s(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 0);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

/// An example policy with `verification: envoy` on its (first) provider, written to `dir`.
fn envoy_verified_policy(name: &str, dir: &Temp) -> String {
    let text = std::fs::read_to_string(policy(name)).unwrap();
    let marker = "        maxTokenLifetimeSeconds:";
    let at = text.find(marker).unwrap();
    let edited = format!(
        "{}        verification: envoy\n{}",
        &text[..at],
        &text[at..]
    );
    let path = dir.path().join(format!("{name}-envoy.yaml"));
    std::fs::write(&path, edited).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn render_envoy_puts_native_jwt_authn_in_front_of_the_mesh_filter_for_envoy_verification() {
    let dir = Temp::new("envoy-verification");
    let file = envoy_verified_policy("ehr-api", &dir);
    assert_eq!(cli(&["policy", "check", &file]).code, 0);
    let out_dir = Temp::new("render-envoy-verification");
    let out = cli(&[
        "policy",
        "render",
        &file,
        "--target",
        "envoy",
        "--out",
        out_dir.s(),
        "--collector",
        "10.0.0.9:9443",
        "--wasm-dir",
        "no-such-dir",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let envoy = std::fs::read_to_string(out_dir.path().join("envoy.yaml")).unwrap();
    let pos = |needle: &str| {
        envoy
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {envoy}"))
    };
    // jwt_authn, then the one hipaa-mesh filter (audit, transport, authn), router.
    let jwt = pos("- name: envoy.filters.http.jwt_authn");
    assert!(
        jwt < pos("- name: hipaa-mesh")
            && pos("- name: hipaa-mesh") < pos("envoy.filters.http.router")
    );
    assert!(!envoy.contains("hipaa-authn") && !envoy.contains("hipaa-transport"));
    for needle in [
        "payload_in_metadata: payload",
        "forward: true",
        "allow_missing_or_failed: {}",
        "uri: https://idp.hospital.example/.well-known/jwks.json",
        "cluster: hospital-idp",
        "cache_duration: \"300s\"",
        "value_prefix: \"Bearer \"",
        "issuer: https://idp.hospital.example",
    ] {
        assert!(envoy.contains(needle), "{needle} not in {envoy}");
    }
    // One jwt_authn per inbound filter chain (TLS and plaintext), each with only the
    // requirement that never refuses by itself.
    let filters = envoy
        .matches("- name: envoy.filters.http.jwt_authn")
        .count();
    assert_eq!(filters, 2);
    assert_eq!(envoy.matches("requires:").count(), filters);
    assert_eq!(envoy.matches("requires_any:").count(), filters);
    assert_eq!(
        envoy.matches("- allow_missing_or_failed: {}").count(),
        filters
    );
    // The wasm-mode render of the same example has no jwt_authn at all.
    let plain = std::fs::read_to_string(root().join("envoy/ehr-api/envoy.yaml")).unwrap();
    assert!(!plain.contains("jwt_authn"));
}

#[test]
fn render_istio_adds_a_request_authentication_and_moves_the_plugin_after_it() {
    let dir = Temp::new("istio-verification");
    let file = envoy_verified_policy("clinical-ai", &dir);
    let wasm = fake_wasm_dir();
    let out_dir = Temp::new("render-istio-verification");
    let out = cli(&[
        "policy",
        "render",
        &file,
        "--target",
        "istio",
        "--out",
        out_dir.s(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("spec.identity.providers[0].verification: envoy"),
        "{}",
        out.stderr
    );
    let security = std::fs::read_to_string(out_dir.path().join("security.yaml")).unwrap();
    for needle in [
        "kind: RequestAuthentication",
        "forwardOriginalToken: true",
        "issuer: https://idp.hospital.example",
        "jwksUri: https://idp.hospital.example/.well-known/jwks.json",
        "- clinical-ai",
        "prefix: \"Bearer \"",
    ] {
        assert!(security.contains(needle), "{needle} not in {security}");
    }
    let plugins = std::fs::read_to_string(out_dir.path().join("wasmplugins.yaml")).unwrap();
    // One plugin, after Istio's jwt_authn (its 401s are recorded at log time).
    assert_eq!(plugins.matches("kind: WasmPlugin").count(), 1, "{plugins}");
    assert!(plugins.contains("phase: AUTHZ"), "{plugins}");
    assert!(!plugins.contains("phase: AUTHN"), "{plugins}");
    // The pluginConfig carries the mode, so authn knows to ask for Envoy's payload.
    assert!(plugins.contains("verification: envoy"), "{plugins}");
}

// ---------------------------------------------------------------- report

#[test]
fn report_matches_the_golden_files() {
    for name in EXAMPLES {
        let md = cli(&["policy", "report", &policy(name)]);
        assert_eq!(md.code, 0, "{}", md.stderr);
        golden(&format!("report/{name}.md"), &md.stdout);
        let html = cli(&["policy", "report", &policy(name), "--format", "html"]);
        assert_eq!(html.code, 0, "{}", html.stderr);
        golden(&format!("report/{name}.html"), &html.stdout);
    }
}

#[test]
fn report_lists_every_164_312_specification_and_the_ai_inventory() {
    let md = cli(&["policy", "report", &policy("clinical-ai")]).stdout;
    for cfr in [
        "164.312(a)(1)",
        "164.312(a)(2)(i)",
        "164.312(a)(2)(ii)",
        "164.312(a)(2)(iii)",
        "164.312(a)(2)(iv)",
        "164.312(b)",
        "164.312(c)(1)",
        "164.312(c)(2)",
        "164.312(d)",
        "164.312(e)(1)",
        "164.312(e)(2)(i)",
        "164.312(e)(2)(ii)",
    ] {
        assert!(md.contains(&format!("| {cfr} |")), "{cfr} missing:\n{md}");
    }
    assert!(md.contains("| sepsis-risk | `prefix /v1/predict/sepsis` | `x-model-name` | `x-model-version` | `header x-patient-id` |"), "{md}");
    assert!(
        md.contains("| api.llm-vendor.example | BAA-2026-014 | 2027-06-30 |"),
        "{md}"
    );
}

#[test]
fn report_says_when_envoy_checks_the_signatures() {
    let md = cli(&["policy", "report", &policy("ehr-api")]).stdout;
    assert!(!md.contains("signatures checked by Envoy"), "{md}");
    let dir = Temp::new("envoy-mode");
    let text = std::fs::read_to_string(policy("ehr-api")).unwrap().replace(
        "        algorithms: [RS256, ES256, EdDSA]\n",
        "        algorithms: [RS256, ES256, EdDSA]\n        verification: envoy\n",
    );
    let path = dir.path().join("envoy-mode.yaml");
    std::fs::write(&path, text).unwrap();
    let md = cli(&["policy", "report", path.to_str().unwrap()]).stdout;
    assert!(
        md.contains("skew 30 s; signatures checked by Envoy's jwt_authn)"),
        "{md}"
    );
}

#[test]
fn report_shows_the_gaps_of_an_unsafe_policy() {
    let dir = Temp::new("gaps");
    let text = std::fs::read_to_string(policy("ehr-api"))
        .unwrap()
        .replace("requireMtls: true", "requireMtls: false");
    let text = cut(text, "    breakGlass:", "  routes:\n");
    let path = dir.path().join("gaps.yaml");
    std::fs::write(&path, text).unwrap();
    let md = cli(&["policy", "report", path.to_str().unwrap()]).stdout;
    assert!(
        md.contains("- **164.312(a)(2)(ii)** Emergency access procedure: is required"),
        "{md}"
    );
    assert!(
        md.contains(
            "- **164.312(e)(1)** Transmission security (standard): `false` switches mTLS off"
        ),
        "{md}"
    );
}

/// Issue #13 item 4: the collector's ingest allow-list, rendered from the three example
/// policies, matches istio/collector and envoy/collector (scripts/render-examples.sh): only the
/// three workloads' SPIFFE ids may POST records; Istio gets an ALLOW AuthorizationPolicy (so
/// everything else is 403) and STRICT mTLS on the collector, Envoy an RBAC filter on the peer
/// certificate's URI SAN and the sender's identity in a sanitised x-forwarded-client-cert.
#[test]
fn render_collector_allows_only_the_policies_workload_identities() {
    let policies: Vec<String> = EXAMPLES.iter().map(|n| policy(n)).collect();
    let istio_out = Temp::new("render-collector-istio");
    let mut args = vec!["policy", "render-collector"];
    args.extend(policies.iter().map(String::as_str));
    let mut istio = args.clone();
    istio.extend(["--target", "istio", "--out", istio_out.s()]);
    let out = cli(&istio);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let authz = std::fs::read_to_string(istio_out.path().join("collector-authz.yaml")).unwrap();
    golden("istio/collector/collector-authz.yaml", &authz);
    golden_at(&root().join("istio/collector/collector-authz.yaml"), &authz);
    assert!(authz.contains("kind: AuthorizationPolicy") && authz.contains("action: ALLOW"));
    assert!(authz.contains("mode: STRICT"));
    for id in [
        "cluster.local/ns/ehr/sa/ehr-api",
        "cluster.local/ns/clinical-ai/sa/clinical-ai",
        "cluster.local/ns/lab/sa/lab-results",
    ] {
        assert!(authz.contains(&format!("- {id}\n")), "{id}: {authz}");
    }
    assert!(authz.contains("namespace: hipaa-system"));

    let envoy_out = Temp::new("render-collector-envoy");
    let mut envoy = args.clone();
    envoy.extend([
        "--target",
        "envoy",
        "--out",
        envoy_out.s(),
        "--certs",
        "envoy/certs",
        "--collector",
        "127.0.0.1:9443",
        "--collector-backend",
        "127.0.0.1:9100",
        "--collector-admin",
        "127.0.0.1:15100",
    ]);
    let out = cli(&envoy);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sidecar = std::fs::read_to_string(envoy_out.path().join("collector-sidecar.yaml")).unwrap();
    golden_at(
        &root().join("envoy/collector/collector-sidecar.yaml"),
        &sidecar,
    );
    assert!(sidecar.contains("envoy.filters.http.rbac"));
    assert!(sidecar.contains("exact: spiffe://cluster.local/ns/lab/sa/lab-results"));
    assert!(sidecar.contains("forward_client_cert_details: SANITIZE_SET"));
    assert!(sidecar.contains("require_client_certificate: true"));

    // --identity names a workload's identity when its service account is not the policy's name.
    let named = Temp::new("render-collector-named");
    let mut a = args.clone();
    a.extend([
        "--target",
        "istio",
        "--out",
        named.s(),
        "--identity",
        "lab-results=spiffe://hospital.example/ns/lab/sa/lab-api",
    ]);
    let out = cli(&a);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(named.path().join("collector-authz.yaml")).unwrap();
    assert!(
        text.contains("- hospital.example/ns/lab/sa/lab-api\n"),
        "{text}"
    );
    assert!(!text.contains("sa/lab-results"), "{text}");
    // An --identity for a policy not given is a mistake, not silently ignored.
    let mut a = args.clone();
    a.extend([
        "--target",
        "istio",
        "--out",
        named.s(),
        "--identity",
        "nobody=spiffe://td/ns/x/sa/y",
    ]);
    let out = cli(&a);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no policy of that name"),
        "{}",
        out.stderr
    );

    // The per-policy collector sidecar (`policy render --target envoy`) takes records from
    // that workload only.
    let own = std::fs::read_to_string(root().join("envoy/ehr-api/collector-sidecar.yaml")).unwrap();
    assert!(own.contains("exact: spiffe://cluster.local/ns/ehr/sa/ehr-api"));
    assert!(!own.contains("sa/lab-results"));
}

/// With `identity.session.authority` (issue #16) both renderings give the VM the authority's
/// key variable (by name, from the host), and an authority on another cluster than the audit
/// collector's (the only one rendered for the filter's calls) is refused.
#[test]
fn render_gives_the_vm_the_session_authority_key_and_refuses_an_unreachable_authority() {
    let wasm = fake_wasm_dir();
    let dir = Temp::new("authority");
    let text = std::fs::read_to_string(policy("ehr-api")).unwrap();
    let with = |cluster: &str| {
        text.replace(
            "    session: { idleTimeoutSeconds: 900, absoluteTimeoutSeconds: 43200, sessionClaim: sid }",
            &format!("    session: {{ idleTimeoutSeconds: 900, absoluteTimeoutSeconds: 43200, sessionClaim: sid, authority: {{ cluster: {cluster}, keyEnv: HIPAA_SESSION_AUTHORITY_KEY }} }}"),
        )
    };
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, with("audit-collector")).unwrap();
    assert!(std::fs::read_to_string(&good)
        .unwrap()
        .contains("authority: { cluster"));
    let istio = dir.path().join("istio");
    let out = cli(&[
        "policy",
        "render",
        good.to_str().unwrap(),
        "--target",
        "istio",
        "--out",
        istio.to_str().unwrap(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plugin = std::fs::read_to_string(istio.join("wasmplugins.yaml")).unwrap();
    assert!(plugin.contains("HIPAA_SESSION_AUTHORITY_KEY"), "{plugin}");
    assert!(plugin.contains("HIPAA_AUDIT_HMAC_KEY"), "{plugin}");
    let envoy = dir.path().join("envoy");
    let flags_text = std::fs::read_to_string(root().join("envoy/render-flags")).unwrap();
    let mut args = vec![
        "policy",
        "render",
        "--target",
        "envoy",
        "--out",
        envoy.to_str().unwrap(),
        good.to_str().unwrap(),
    ];
    args.extend(
        flags_text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::split_whitespace),
    );
    let out = cli(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config = std::fs::read_to_string(envoy.join("envoy.yaml")).unwrap();
    let keys_line = config
        .lines()
        .skip_while(|l| !l.contains("host_env_keys"))
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        keys_line.contains("HIPAA_SESSION_AUTHORITY_KEY"),
        "{keys_line}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, with("some-other-cluster")).unwrap();
    let out = cli(&[
        "policy",
        "render",
        bad.to_str().unwrap(),
        "--target",
        "istio",
        "--out",
        istio.to_str().unwrap(),
        "--wasm-dir",
        wasm.s(),
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("spec.identity.session.authority.cluster"),
        "{}",
        out.stderr
    );
}
