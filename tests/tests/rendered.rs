//! The Envoy configs `hipaa-mesh policy render --target envoy` writes, run as a user runs them:
//! every example policy renders and passes `envoy --mode validate`, and the demo policy's
//! topology (workload sidecar, collector sidecar, collector, app, a stand-in BAA vendor) serves
//! and refuses as the policy says, with every refusal recorded — reason and TLS facts included —
//! through the mTLS link to the collector. Certificates come from scripts/dev-certs.sh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::collector::Collector;
use hipaa_e2e::curl::{curl, Reply};
use hipaa_e2e::idp::{Keys, Upstream};
use hipaa_e2e::process::{wait_for_port, Proc};
use hipaa_e2e::{cli_bin, envoy_bin, free_port, http, root, wasm, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WORKLOAD: &str = "spiffe://cluster.local/ns/demo/sa/demo-ehr";
const WEB: &str = "spiffe://cluster.local/ns/demo/sa/web";
const BATCH: &str = "spiffe://cluster.local/ns/demo/sa/batch";
const VENDOR: &str = "api.llm-vendor.example";
const IDP: &str = "idp.hospital.example";

/// Development certificates from the same script the demo uses: `web` is the policy's allowed
/// peer, `batch` a verified peer it does not list, `vendor` and `idp` servers for DNS names.
fn certs(dir: &Path, web: &str) {
    let out = Command::new(root().join("scripts/dev-certs.sh"))
        .arg(dir)
        .arg(WORKLOAD)
        .arg(format!("web={web}"))
        .arg(format!("batch={BATCH}"))
        .arg(format!("vendor=dns:{VENDOR}"))
        .arg(format!("idp=dns:{IDP}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dev-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy file from policies/, with the demo IdP's keys where the demo policy wants them.
fn policy(dir: &Path, name: &str, jwks: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("policies").join(format!("{name}.yaml")))
        .unwrap()
        .replace("__DEMO_JWKS__", &jwks.trim().replace('\'', "''"));
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

struct Ports {
    inbound: u16,
    outbound: u16,
    admin: u16,
    app: u16,
    collector_mtls: u16,
    collector_backend: u16,
    collector_admin: u16,
    vendor: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            inbound: free_port(),
            outbound: free_port(),
            admin: free_port(),
            app: free_port(),
            collector_mtls: free_port(),
            collector_backend: free_port(),
            collector_admin: free_port(),
            vendor: free_port(),
        }
    }
}

/// `policy render --target envoy` into `out`; the rendered files.
fn render(
    policy: &Path,
    certs: &Path,
    ports: &Ports,
    endpoints: &[String],
    out: &Path,
) -> Vec<PathBuf> {
    let a = |p: u16| format!("127.0.0.1:{p}");
    let output = Command::new(cli_bin())
        .args(["policy", "render"])
        .arg(policy)
        .args(["--target", "envoy", "--out"])
        .arg(out)
        .arg("--wasm-dir")
        .arg(wasm("audit").parent().unwrap())
        .arg("--certs")
        .arg(certs)
        .arg("--public-ca")
        .arg(certs.join("ca.pem"))
        .args(["--inbound", &a(ports.inbound)])
        .args(["--outbound", &a(ports.outbound)])
        .args(["--admin", &a(ports.admin)])
        .args(["--app", &a(ports.app)])
        .args(["--collector", &a(ports.collector_mtls)])
        .args(["--collector-backend", &a(ports.collector_backend)])
        .args(["--collector-admin", &a(ports.collector_admin)])
        // The tests' workload certificate (dev-certs.sh) is the demo workload's for every
        // example: its collector sidecar takes records from that identity only.
        .args(["--workload-identity", WORKLOAD])
        .args([
            "--endpoint",
            &format!("egress|{VENDOR}={}", a(ports.vendor)),
        ])
        .args(endpoints.iter().flat_map(|e| ["--endpoint", e.as_str()]))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "render {}: {}",
        policy.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

fn envoy_validate(config: &Path, env: &[(String, String)]) -> (bool, String) {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_example_policy_renders_to_configs_envoy_validates() {
    let dir = TempDir::new("rendered-validate");
    certs(&dir.path().join("certs"), WEB);
    let keys = Keys::generate();
    let mut env = vec![(
        "HIPAA_AUDIT_HMAC_KEY".to_string(),
        hipaa_e2e::collector::test_mac_key(),
    )];
    env.extend(hipaa_e2e::body_signing_env());
    let mut examples: Vec<String> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".yaml").map(String::from)
        })
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "{examples:?}");
    for name in &examples {
        let file = policy(dir.path(), name, &keys.jwks());
        let out = dir.path().join(format!("out-{name}"));
        let files = render(&file, &dir.path().join("certs"), &Ports::new(), &[], &out);
        assert!(
            files.iter().any(|f| f.ends_with("envoy.yaml")),
            "{name}: {files:?}"
        );
        assert!(
            files.iter().any(|f| f.ends_with("collector-sidecar.yaml")),
            "{name}: {files:?}"
        );
        for f in &files {
            let (ok, log) = envoy_validate(f, &env);
            assert!(ok, "{name}: envoy --mode validate {}:\n{log}", f.display());
            assert!(log.contains("OK"), "{log}");
        }
    }
}

#[test]
fn a_bad_render_request_is_refused_with_the_reason() {
    let dir = TempDir::new("rendered-bad");
    let keys = Keys::generate();
    let file = policy(dir.path(), "demo", &keys.jwks());
    let out = Command::new(cli_bin())
        .args(["policy", "render"])
        .arg(&file)
        .args(["--target", "envoy", "--out"])
        .arg(dir.path().join("out"))
        .args(["--inbound", "localhost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`localhost` is not HOST:PORT"), "{err}");
    assert!(!dir.path().join("out/envoy.yaml").exists());
}

// ---------------------------------------------------------------- the demo topology

struct Topology {
    ports: Ports,
    certs: PathBuf,
    keys: Keys,
    collector: Collector,
    workload: Proc,
    sidecar: Proc,
    _servers: Vec<Proc>,
    _app: Upstream,
    _dir: TempDir,
}

/// scripts/dev-vendor.py: HTTPS with the named certificate, answering with `body` if given.
fn https_server(name: &str, port: u16, certs: &Path, body: Option<&Path>, dir: &Path) -> Proc {
    let mut cmd = Command::new(root().join("scripts/dev-vendor.py"));
    cmd.arg(port.to_string())
        .arg(certs.join(format!("{name}.pem")))
        .arg(certs.join(format!("{name}-key.pem")));
    if let Some(b) = body {
        cmd.arg(b);
    }
    let proc = Proc::spawn(name, cmd, dir.join(format!("{name}.log")));
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "{name} did not start"
    );
    proc
}

fn start_envoy(
    name: &str,
    config: &Path,
    admin: u16,
    env: &[(String, String)],
    dir: &Path,
) -> Proc {
    let mut cmd = Command::new(envoy_bin());
    cmd.arg("-c")
        .arg(config)
        .args([
            "--concurrency",
            "2",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ])
        .envs(env.iter().cloned());
    let mut proc = Proc::spawn(name, cmd, dir.join(format!("{name}.log")));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(proc.alive(), "{name} exited:\n{}", proc.log_text());
        if http::try_request(admin, "GET", "/ready", &[], b"").is_ok_and(|r| r.status == 200) {
            return proc;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not ready:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An example policy to run: its file in policies/, the peer it allows, and the cluster its
/// remote JWKS is fetched through (None: inline keys).
struct Example {
    name: &'static str,
    peer: &'static str,
    jwks_cluster: Option<&'static str>,
}

const DEMO: Example = Example {
    name: "demo",
    peer: WEB,
    jwks_cluster: None,
};

impl Topology {
    fn start(example: &Example) -> Topology {
        Topology::start_with(example, |text| text)
    }

    /// [`Topology::start`] with the example policy's text edited first.
    fn start_with(example: &Example, edit: impl FnOnce(String) -> String) -> Topology {
        let dir = TempDir::new("rendered-topology");
        let certs = dir.path().join("certs");
        self::certs(&certs, example.peer);
        let keys = Keys::generate();
        let file = policy(dir.path(), example.name, &keys.jwks());
        std::fs::write(&file, edit(std::fs::read_to_string(&file).unwrap())).unwrap();
        let mut ports = Ports::new();
        let collector = Collector::start();
        ports.collector_backend = collector.port;
        let app = Upstream::start();
        ports.app = app.port;
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        if let Some(cluster) = example.jwks_cluster {
            // The IdP's JWKS over TLS, at the address the policy's cluster is pointed to.
            let port = free_port();
            let jwks = dir.path().join("jwks.json");
            std::fs::write(&jwks, keys.jwks()).unwrap();
            servers.push(https_server("idp", port, &certs, Some(&jwks), dir.path()));
            endpoints.push(format!("{cluster}=127.0.0.1:{port}"));
        }
        let out = dir.path().join("envoy");
        render(&file, &certs, &ports, &endpoints, &out);
        servers.push(https_server(
            "vendor",
            ports.vendor,
            &certs,
            None,
            dir.path(),
        ));
        let sidecar = start_envoy(
            "collector-sidecar",
            &out.join("collector-sidecar.yaml"),
            ports.collector_admin,
            &[],
            dir.path(),
        );
        let workload = start_envoy(
            "workload",
            &out.join("envoy.yaml"),
            ports.admin,
            &[collector.vm_env(), hipaa_e2e::body_signing_env()].concat(),
            dir.path(),
        );
        assert!(wait_for_port(ports.inbound, Duration::from_secs(10)));
        Topology {
            ports,
            certs,
            keys,
            collector,
            workload,
            sidecar,
            _servers: servers,
            _app: app,
            _dir: dir,
        }
    }

    fn cert(&self, name: &str) -> Vec<String> {
        vec![
            "--cert".into(),
            self.certs.join(format!("{name}.pem")).display().to_string(),
            "--key".into(),
            self.certs
                .join(format!("{name}-key.pem"))
                .display()
                .to_string(),
        ]
    }

    /// HTTPS to the inbound listener: `client` names a certificate, `extra` adds curl options.
    fn https(
        &self,
        client: Option<&str>,
        extra: &[&str],
        path: &str,
    ) -> Result<Reply, (i32, String)> {
        let mut args: Vec<String> = vec![
            "--cacert".into(),
            self.certs.join("ca.pem").display().to_string(),
        ];
        if let Some(c) = client {
            args.extend(self.cert(c));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("https://localhost:{}{path}", self.ports.inbound));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs)
    }

    fn plaintext(&self, extra: &[&str], path: &str) -> Reply {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.push(format!("http://127.0.0.1:{}{path}", self.ports.inbound));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs).unwrap()
    }

    /// The app's call out of the mesh, through the outbound listener as an HTTP proxy.
    fn egress(&self, url: &str, request_id: &str) -> Reply {
        curl(&[
            "-x",
            &format!("http://127.0.0.1:{}", self.ports.outbound),
            "-H",
            &format!("x-request-id: {request_id}"),
            "-d",
            "{\"note\":\"...\"}",
            url,
        ])
        .unwrap()
    }

    /// The collector's record of one request (waiting for the batch to arrive).
    fn record(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let all = self.collector.records("limit=10000");
            if let Some(r) = all.iter().find(|r| r["requestId"] == request_id) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no record for {request_id}; the collector has {} records; collector log:\n{}",
                all.len(),
                self.collector.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn rid(r: &Reply) -> String {
    r.json()["request_id"].as_str().unwrap().to_string()
}

#[test]
fn the_rendered_demo_topology_serves_refuses_and_records_every_refusal() {
    let mut t = Topology::start(&DEMO);
    let alice = t.keys.clinician("alice");
    let bearer = format!("authorization: Bearer {alice}");

    // The kubelet probe: plaintext, public, allowPlaintext.
    assert_eq!(t.plaintext(&[], "/healthz").status, 200);

    // A PHI request over plaintext: 403 from transport, recorded without TLS facts.
    let plain = t.plaintext(&["-H", &bearer], "/fhir/Patient/123");
    plain.assert_denied(403, "plaintext_refused");
    let r = t.record(&rid(&plain));
    assert_eq!(r["outcome"]["reason"], "plaintext_refused");
    assert_eq!(r["outcome"]["status"], 403);
    assert_eq!(r["source"]["tls"], Value::Null);
    assert_eq!(r["resource"]["patient"], "123");

    // TLS below 1.2 and an untrusted CA end in the handshake: the pinned listener refuses them.
    let tls11 = [
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        "--ciphers",
        "DEFAULT:@SECLEVEL=0",
    ];
    assert!(t.https(Some("web"), &tls11, "/fhir/Patient/123").is_err());
    assert!(t
        .https(Some("rogue"), &["-H", &bearer], "/fhir/Patient/123")
        .is_err());

    // TLS without a client certificate: 403 from transport, recorded with the TLS version.
    let nocert = t
        .https(None, &["-H", &bearer], "/fhir/Patient/123")
        .unwrap();
    nocert.assert_denied(403, "client_certificate_required");
    let r = t.record(&rid(&nocert));
    assert_eq!(r["source"]["tls"], "TLSv1.3");
    assert_eq!(r["actor"]["peer"], Value::Null);

    // A verified peer that is not on allowedPeers: 403, recorded with its SPIFFE id.
    let batch = t
        .https(
            Some("batch"),
            &["--tlsv1.2", "--tls-max", "1.2", "-H", &bearer],
            "/fhir/Patient/123",
        )
        .unwrap();
    batch.assert_denied(403, "peer_not_allowed");
    let r = t.record(&rid(&batch));
    assert_eq!(r["source"]["tls"], "TLSv1.2");
    assert_eq!(r["actor"]["peer"], BATCH);

    // The allowed peer with a good token: the app answers, the record names user and peer.
    let ok = t
        .https(
            Some("web"),
            &["-H", &bearer, "-H", "x-request-id: chosen-by-the-client"],
            "/fhir/Patient/123",
        )
        .unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.echoed("x-hipaa-subject").as_deref(), Some("alice"));
    // An edge listener makes its own request id: a client cannot pick the record's id.
    let id = ok.echoed("x-request-id").unwrap();
    assert_ne!(id, "chosen-by-the-client");
    let r = t.record(&id);
    assert_eq!(r["outcome"]["decision"], "allow");
    assert_eq!(r["actor"]["subject"], "alice");
    assert_eq!(r["actor"]["peer"], WEB);
    assert_eq!(r["egress"], Value::Null);

    // No token from the allowed peer: authn's 401, recorded.
    let anon = t.https(Some("web"), &[], "/fhir/Patient/123").unwrap();
    assert_eq!(anon.status, 401);
    assert_eq!(t.record(&rid(&anon))["outcome"]["reason"], "missing_token");

    // Egress: the BAA vendor answers through Envoy's TLS origination, the record names the BAA.
    let listed = t.egress(&format!("http://{VENDOR}/v1/summarize"), "egress-listed");
    assert_eq!(
        listed.status,
        200,
        "{}",
        String::from_utf8_lossy(&listed.body)
    );
    assert_eq!(listed.json()["vendor"], VENDOR);
    let r = t.record("egress-listed");
    assert_eq!(r["egress"]["host"], VENDOR);
    assert_eq!(r["egress"]["baaId"], "BAA-2026-014");
    assert_eq!(r["outcome"]["decision"], "allow");

    let unlisted = t.egress("http://api.unlisted-llm.example/v1/chat", "egress-unlisted");
    unlisted.assert_denied(403, "egress_host_not_listed");
    let r = t.record("egress-unlisted");
    assert_eq!(r["egress"]["host"], "api.unlisted-llm.example");
    assert_eq!(r["egress"]["baaId"], Value::Null);
    assert_eq!(r["outcome"]["reason"], "egress_host_not_listed");

    let expired = t.egress("http://API.Old-Vendor.example:80/v1/chat", "egress-expired");
    expired.assert_denied(403, "egress_baa_expired");
    let r = t.record("egress-expired");
    assert_eq!(r["egress"]["baaId"], "BAA-2021-003");

    // Issue #14: every refused egress is an alert, raised by the collector's default detectors
    // within seconds, naming the record; the allowed vendor call is not.
    let refused = t
        .collector
        .wait_for_alerts("kind=exfiltration", 2, Duration::from_secs(20));
    let mut named: Vec<&str> = refused
        .iter()
        .map(|a| a["records"][0].as_str().unwrap())
        .collect();
    named.sort();
    assert_eq!(
        named,
        vec!["egress-expired", "egress-unlisted"],
        "{refused:?}"
    );
    assert!(refused
        .iter()
        .all(|a| a["severity"] == "high" && a["status"] == "open"));

    // Every record came over the mTLS link: the collector's sidecar is its only way in.
    let ssl = counter(t.ports.collector_admin, "listener.", "ssl.handshake");
    assert!(ssl >= 1, "the collector sidecar saw no TLS handshake");
    // The sidecar refuses a client without a certificate, and lets no query through.
    let collector_url = format!("https://localhost:{}/v1/records", t.ports.collector_mtls);
    let ca = t.certs.join("ca.pem").display().to_string();
    assert!(curl(&["--cacert", &ca, &collector_url]).is_err());
    let mut args = vec!["--cacert".to_string(), ca.clone()];
    args.extend(t.cert("web"));
    args.push(format!("{collector_url}?patient=123"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(&refs).unwrap().status, 403);

    assert!(t.workload.alive() && t.sidecar.alive());
    let (code, report) = t.collector.verify();
    assert_eq!(code, 0, "{report}");
}

/// The sum of admin counters whose name starts with `prefix` and ends with `suffix`.
fn counter(admin: u16, prefix: &str, suffix: &str) -> u64 {
    http::get(admin, "/stats", &[])
        .body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------- the example policies

/// One allowed and two refused requests through an example policy's rendered topology, with
/// the JWKS fetched from a stand-in of the hospital IdP over the rendered TLS cluster.
fn run_example(example: &Example, token: &[&str], request: &[&str], path: &str) {
    let mut t = Topology::start(example);
    let (ok, good) = first_allowed(&t, example, token, request, path);
    let mut extra = vec!["-H", good.as_str()];
    extra.extend(request);
    let id = ok.echoed("x-request-id").unwrap();
    let r = t.record(&id);
    assert_eq!(r["outcome"]["decision"], "allow", "{}", example.name);
    assert_eq!(r["actor"]["peer"], example.peer);
    assert_eq!(r["resource"]["patient"], "123");

    // A verified peer the policy does not list, with the same good token: 403, recorded.
    let batch = t.https(Some("batch"), &extra, path).unwrap();
    batch.assert_denied(403, "peer_not_allowed");
    assert_eq!(t.record(&rid(&batch))["actor"]["peer"], BATCH);

    // The allowed peer without a token: 401, recorded.
    let anon = t.https(Some("web"), request, path).unwrap();
    assert_eq!(anon.status, 401, "{}", example.name);
    assert_eq!(t.record(&rid(&anon))["outcome"]["reason"], "missing_token");

    assert!(t.workload.alive() && t.sidecar.alive());
    let (code, report) = t.collector.verify();
    assert_eq!(code, 0, "{report}");
}

/// The first 200 from the web peer with a good token (the first requests may race the first
/// JWKS fetch: 401 until it lands), and the token's `authorization` header line.
fn first_allowed(
    t: &Topology,
    example: &Example,
    token: &[&str],
    request: &[&str],
    path: &str,
) -> (Reply, String) {
    let mut args = vec!["--iss", "https://idp.hospital.example", "--sid", "s-1"];
    args.extend(token);
    let good = format!("authorization: Bearer {}", t.keys.token(&args));
    let mut extra = vec!["-H", good.as_str()];
    extra.extend(request);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        let r = t.https(Some("web"), &extra, path).unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        ok.status,
        200,
        "{}: {}",
        example.name,
        String::from_utf8_lossy(&ok.body)
    );
    (ok, good)
}

const CLINICAL_AI: Example = Example {
    name: "clinical-ai",
    peer: "spiffe://cluster.local/ns/ehr/sa/ehr-web",
    jwks_cluster: Some("outbound|443||idp.hospital.example"),
};
const CLINICIAN: &[&str] = &[
    "--aud",
    "clinical-ai",
    "--sub",
    "alice",
    "--roles",
    "clinician",
    "--amr",
    "pwd,otp",
];
const SEPSIS_4_2: &[&str] = &[
    "-X",
    "POST",
    "-H",
    "x-patient-id: 123",
    "-H",
    "x-model-name: sepsis-risk",
    "-H",
    "x-model-version: 4.2.0",
];

/// Lowercase hex SHA-256 of `bytes`, by coreutils (not by the code under test).
fn sha256sum(bytes: &[u8]) -> String {
    let dir = TempDir::new("sha256");
    let file = dir.path().join("body");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&file).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

/// Issue #15 item 5: the record of an inference states what the model answered — the SHA-256
/// of the body the caller received and the key id of the response signature the caller got
/// with it — and `hipaa-mesh audit query --model --version` prints it; the trail stays
/// verifiable (the member is under the record's MAC).
#[test]
fn the_inference_record_states_the_answer_the_caller_received() {
    let t = Topology::start(&CLINICAL_AI);
    let path = "/v1/predict/sepsis";
    let (ok, _) = first_allowed(&t, &CLINICAL_AI, CLINICIAN, SEPSIS_4_2, path);
    assert!(!ok.body.is_empty());
    let answered = sha256sum(&ok.body);
    // The signature the caller received (a trailer, as the body streamed) names key r1.
    let signature = ok.header("x-hipaa-signature").expect("signed response");
    assert!(signature.starts_with("keyid=r1;"), "{signature}");
    let id = ok.echoed("x-request-id").unwrap();
    let r = t.record(&id);
    assert_eq!(r["action"]["operation"], "inference");
    assert_eq!(
        r["inference"],
        serde_json::json!({"model": "sepsis-risk", "version": "4.2.0",
            "responseSha256": answered, "responseSignatureKeyId": "r1"}),
        "{r}"
    );
    // A refused inference call states no answer: the denial's body is the mesh's.
    let anon = t.https(Some("web"), SEPSIS_4_2, path).unwrap();
    assert_eq!(anon.status, 401);
    let denied = t.record(&rid(&anon));
    assert!(
        denied["inference"].get("responseSha256").is_none(),
        "{denied}"
    );

    // The CLI by model and version: JSON carries the member, the table prints it.
    let by_model = ["--model", "sepsis-risk", "--version", "4.2.0"];
    let rows = t.collector.query_cli(&by_model);
    let row = rows.iter().find(|x| x["requestId"] == id.as_str()).unwrap();
    assert_eq!(row["inference"]["responseSha256"], answered.as_str());
    let out = Command::new(cli_bin())
        .args(["audit", "query", "--db", &t.collector.db])
        .args(by_model)
        .envs(t.collector.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let line = table.lines().find(|l| l.contains(&id)).expect("the row");
    assert!(line.contains(&answered) && line.contains(" r1 "), "{table}");
    assert!(table.contains("RESPONSE_SHA256"), "{table}");
    let (code, report) = t.collector.verify();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn example_ehr_api_runs_as_rendered() {
    run_example(
        &Example {
            name: "ehr-api",
            peer: "spiffe://cluster.local/ns/ehr/sa/web",
            jwks_cluster: Some("hospital-idp"),
        },
        &[
            "--aud",
            "ehr-api",
            "--sub",
            "alice",
            "--roles",
            "clinician",
            "--amr",
            "pwd,otp",
        ],
        &[],
        "/fhir/Patient/123",
    );
}

#[test]
fn example_clinical_ai_runs_as_rendered() {
    run_example(&CLINICAL_AI, CLINICIAN, SEPSIS_4_2, "/v1/predict/sepsis");
}

#[test]
fn example_internal_api_runs_as_rendered() {
    run_example(
        &Example {
            name: "internal-api",
            peer: "spiffe://cluster.local/ns/ehr/sa/ehr-web",
            jwks_cluster: Some("outbound|443||idp.hospital.example"),
        },
        &[
            "--aud",
            "lab-results",
            "--alg",
            "ES256",
            "--ttl",
            "120",
            "--sub",
            "ehr-web-client",
            "--roles",
            "ehr-service",
        ],
        &[],
        "/v1/patients/123/results",
    );
}

/// `verification: envoy` as rendered: Envoy's jwt_authn (between transport and authn) fetches
/// the IdP's keys through the rendered TLS cluster and checks signatures; authn requires its
/// payload and answers every refusal itself, each one recorded with authn's reason.
#[test]
fn example_ehr_api_with_envoy_verification_runs_as_rendered() {
    let example = Example {
        name: "ehr-api",
        peer: "spiffe://cluster.local/ns/ehr/sa/web",
        jwks_cluster: Some("hospital-idp"),
    };
    let mut t = Topology::start_with(&example, |text| {
        let marker = "        maxTokenLifetimeSeconds:";
        assert!(text.contains(marker));
        text.replacen(marker, &format!("        verification: envoy\n{marker}"), 1)
    });
    let token = |extra: &[&str]| {
        let mut args = vec![
            "--iss",
            "https://idp.hospital.example",
            "--aud",
            "ehr-api",
            "--sid",
            "s-1",
        ];
        args.extend(extra);
        t.keys.token(&args)
    };
    let good = token(&["--sub", "alice", "--roles", "clinician", "--amr", "pwd,otp"]);
    let bearer = |tok: &str| format!("authorization: Bearer {tok}");
    let path = "/fhir/Patient/123";
    // Envoy fetches the keys at start (async_fetch): wait for the first 200.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        let r = t.https(Some("web"), &["-H", &bearer(&good)], path).unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let r = t.record(&ok.echoed("x-request-id").unwrap());
    assert_eq!(r["outcome"]["decision"], "allow");
    assert_eq!(r["actor"]["subject"], "alice");
    assert!(counter(t.ports.admin, "http.inbound", "jwks_fetch_success") >= 1);
    assert_eq!(
        counter(t.ports.admin, "wasmcustom", "hipaa_authn.jwks.fetch_ok"),
        0
    );

    // A forged signature: refused by authn (Envoy verified nothing), challenge and record.
    let (header, mut payload, sig) = hipaa_e2e::idp::decode(&good);
    payload["roles"] = serde_json::json!(["admin", "clinician"]);
    let forged = hipaa_e2e::idp::assemble(&header.to_string(), &payload.to_string(), &sig);
    let r = t
        .https(Some("web"), &["-H", &bearer(&forged)], path)
        .unwrap();
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"], "invalid_token");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let rec = t.record(&rid(&r));
    assert_eq!(rec["outcome"]["decision"], "deny");
    assert_eq!(rec["outcome"]["reason"], "unverified_by_envoy");
    assert_eq!(rec["actor"]["subject"], serde_json::Value::Null);

    // Verified by Envoy, but no MFA for a clinician: authn's step-up challenge, recorded.
    let no_mfa = token(&["--sub", "bob", "--roles", "clinician", "--amr", "pwd"]);
    let r = t
        .https(Some("web"), &["-H", &bearer(&no_mfa)], path)
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "insufficient_user_authentication");
    assert_eq!(t.record(&rid(&r))["outcome"]["reason"], "mfa_required");

    // A role the route does not allow.
    let billing = token(&["--sub", "carol", "--roles", "billing"]);
    let r = t
        .https(Some("web"), &["-H", &bearer(&billing)], path)
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(t.record(&rid(&r))["outcome"]["reason"], "role_not_allowed");

    assert!(t.workload.alive() && t.sidecar.alive());
    let (code, report) = t.collector.verify();
    assert_eq!(code, 0, "{report}");
}
