//! Envoy configurations for the tests and a running Envoy.
//!
//! Configs are built as JSON (which is YAML) so the policy can be embedded without quoting.

use crate::process::{port_taken, wait_for_port, Proc, START_ATTEMPTS};
use crate::{envoy_bin, free_port, http, wasm, TempDir};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// One hipaa-mesh filter in the chain, loaded from `hipaa_mesh.wasm` with the root id
/// `hipaa-<name>`: `mesh` (the combined filter), or `audit`, `transport`, `authn` alone.
#[derive(Clone)]
pub struct Filter {
    pub name: &'static str,
    /// The plugin configuration (the policy's `spec` as JSON text).
    pub config: String,
}

/// How the suites that exercise the audit/authn chain load it: `HIPAA_E2E_CHAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainMode {
    /// `mesh` (the default, what users deploy): the one combined filter, root id `hipaa-mesh`,
    /// on a listener that terminates TLS; the client speaks mTLS with the test PKI.
    Mesh,
    /// `stages`: one filter per stage (`hipaa-audit`, `hipaa-authn`, `hipaa-transport`, in the
    /// order the suite gives), on a plaintext listener as before the combined filter.
    Stages,
}

impl ChainMode {
    /// `HIPAA_E2E_CHAIN`: `mesh` (default) or `stages`; any other value is a test failure.
    pub fn from_env() -> ChainMode {
        match std::env::var("HIPAA_E2E_CHAIN").as_deref() {
            Err(_) | Ok("") | Ok("mesh") => ChainMode::Mesh,
            Ok("stages") => ChainMode::Stages,
            Ok(other) => panic!("HIPAA_E2E_CHAIN={other}: expected `mesh` or `stages`"),
        }
    }
}

/// The pieces of a standard local topology.
pub struct Topology {
    pub listener_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    pub filters: Vec<Filter>,
    /// Extra STATIC clusters on loopback: (name, port).
    pub clusters: Vec<(String, u16)>,
    /// Environment variables for the Wasm VMs.
    pub vm_env: Vec<(String, String)>,
    pub concurrency: u32,
    /// The listener terminates TLS with the test PKI ([`crate::tls`]); the request helpers
    /// speak TLS to it (with the test client certificate when `Some(Client::Mtls)`).
    pub tls: Option<crate::tls::Client>,
}

impl Topology {
    /// The audit/authn chain of a suite, `stages` in the order it names them (`audit`,
    /// `transport`, `authn`; every stage gets `config`), as [`ChainMode::from_env`] says: the
    /// one combined filter `hipaa-mesh` over mTLS, or one filter per stage over plaintext.
    /// A chain without both audit and authn is always loaded stage by stage.
    pub fn chain(upstream_port: u16, stages: &[&'static str], config: &str) -> Topology {
        Topology::chain_in(ChainMode::from_env(), upstream_port, stages, config)
    }

    pub fn chain_in(
        mode: ChainMode,
        upstream_port: u16,
        stages: &[&'static str],
        config: &str,
    ) -> Topology {
        let combinable = stages.contains(&"audit") && stages.contains(&"authn");
        if mode == ChainMode::Mesh && combinable {
            let mut t = Topology::new(
                upstream_port,
                vec![Filter {
                    name: "mesh",
                    config: config.to_string(),
                }],
            );
            t.tls = Some(crate::tls::Client::Mtls);
            return t;
        }
        Topology::new(
            upstream_port,
            stages
                .iter()
                .map(|name| Filter {
                    name,
                    config: config.to_string(),
                })
                .collect(),
        )
    }

    /// The chain is the combined filter (one `hipaa-mesh`).
    pub fn is_mesh(&self) -> bool {
        self.filters.iter().any(|f| f.name == "mesh")
    }

    pub fn new(upstream_port: u16, filters: Vec<Filter>) -> Topology {
        Topology {
            listener_port: free_port(),
            admin_port: free_port(),
            upstream_port,
            filters,
            clusters: Vec::new(),
            vm_env: Vec::new(),
            concurrency: 2,
            tls: None,
        }
    }

    pub fn config(&self) -> Value {
        let mut http_filters: Vec<Value> =
            self.filters.iter().map(|f| self.wasm_filter(f)).collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        let mut clusters = vec![cluster("app", self.upstream_port)];
        clusters.extend(
            self.clusters
                .iter()
                .map(|(name, port)| cluster(name, *port)),
        );
        let mut config = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {
                "listeners": [{
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.listener_port}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "inbound",
                            "normalize_path": true,
                            "merge_slashes": true,
                            "path_with_escaped_slashes_action": "REJECT_REQUEST",
                            "route_config": {"virtual_hosts": [{
                                "name": "app", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "app", "timeout": "10s"}}]
                            }]},
                            "http_filters": http_filters
                        }
                    }]}]
                }],
                "clusters": clusters
            }
        });
        if self.tls.is_some() {
            config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] =
                crate::tls::downstream_tls_context();
        }
        config
    }

    fn wasm_filter(&self, f: &Filter) -> Value {
        let env: serde_json::Map<String, Value> = self
            .vm_env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "name": format!("hipaa-{}", f.name),
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": format!("hipaa-{}", f.name),
                    "root_id": format!("hipaa-{}", f.name),
                    "fail_open": false,
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": f.config},
                    "vm_config": {
                        "vm_id": format!("hipaa-{}", f.name),
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": wasm(f.name).display().to_string()}},
                        "environment_variables": {"key_values": env}
                    }
                }
            }
        })
    }
}

/// Where [`Topology::config`] puts the inbound listener's and the admin's ports.
const LISTENER_PORT: &str = "/static_resources/listeners/0/address/socket_address/port_value";
const ADMIN_PORT: &str = "/admin/address/socket_address/port_value";

fn set_port(config: &mut Value, pointer: &str, port: u16) {
    match config.pointer_mut(pointer) {
        Some(value) => *value = json!(port),
        None => panic!("no {pointer} in the Envoy configuration"),
    }
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    pub port: u16,
    pub admin_port: u16,
    pub proc: Proc,
    /// The listener terminates TLS (registered with [`crate::tls`] while this Envoy runs).
    pub tls: bool,
    /// The chain is the combined filter (root id `hipaa-mesh`).
    pub mesh: bool,
    _dir: TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if self.tls {
            crate::tls::unregister(self.port);
        }
    }
}

impl Envoy {
    fn spawn(config: &Value, concurrency: u32, dir: &TempDir) -> Proc {
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&path)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg("info")
            .arg("--component-log-level")
            .arg("wasm:debug");
        Proc::spawn("envoy", cmd, dir.path().join("envoy.log"))
    }

    /// Start Envoy and wait until it is ready to serve.
    pub fn start(topology: &Topology) -> Envoy {
        Envoy::start_edited(topology, |_| {})
    }

    /// Start Envoy from the topology's configuration after `edit` changed it (e.g. a
    /// `failure_policy`, an extra filter, `use_remote_address`), and wait until it is ready.
    /// When Envoy exits because its listener or admin port was taken between `free_port()` and
    /// its bind, it is started again on fresh ports (the returned [`Envoy`] names the ports it
    /// serves on, which may then differ from the topology's); any other exit fails the test.
    pub fn start_edited(topology: &Topology, edit: impl FnOnce(&mut Value)) -> Envoy {
        let mut config = topology.config();
        edit(&mut config);
        let (mut listener_port, mut admin_port) = (topology.listener_port, topology.admin_port);
        let mut attempt = 1;
        let (proc, dir) = loop {
            let dir = TempDir::new("envoy");
            match Envoy::spawn_ready(
                &config,
                topology.concurrency,
                &dir,
                listener_port,
                admin_port,
            ) {
                Ok(proc) => break (proc, dir),
                Err(log) if attempt < START_ATTEMPTS && port_taken(&log) => {
                    eprintln!(
                        "Envoy could not bind port {listener_port} or {admin_port} (attempt \
                         {attempt}); starting again on fresh ports"
                    );
                    attempt += 1;
                    listener_port = free_port();
                    admin_port = free_port();
                    set_port(&mut config, LISTENER_PORT, listener_port);
                    set_port(&mut config, ADMIN_PORT, admin_port);
                }
                Err(log) => panic!("Envoy exited at start:\n{log}"),
            }
        };
        if let Some(client) = topology.tls {
            crate::tls::register(listener_port, client);
        }
        Envoy {
            port: listener_port,
            admin_port,
            proc,
            tls: topology.tls.is_some(),
            mesh: topology.is_mesh(),
            _dir: dir,
        }
    }

    /// Spawn Envoy and wait until its admin says ready and its listener accepts; Err with its
    /// log when it exited first.
    fn spawn_ready(
        config: &Value,
        concurrency: u32,
        dir: &TempDir,
        listener_port: u16,
        admin_port: u16,
    ) -> Result<Proc, String> {
        let mut proc = Envoy::spawn(config, concurrency, dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !proc.alive() {
                return Err(proc.log_text());
            }
            if wait_for_port(admin_port, Duration::from_millis(100)) {
                if let Ok(r) = http::try_request(admin_port, "GET", "/ready", &[], b"") {
                    if r.status == 200 && wait_for_port(listener_port, Duration::from_millis(100)) {
                        return Ok(proc);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not ready in 30 s:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start Envoy expecting it to refuse the configuration: its exit code and log.
    pub fn start_expecting_failure(topology: &Topology) -> (i32, String) {
        let dir = TempDir::new("envoy-fail");
        let mut proc = Envoy::spawn(&topology.config(), 1, &dir);
        let code = proc.wait_exit(Duration::from_secs(30));
        let log = proc.log_text();
        match code {
            Some(code) => (code, log),
            None => panic!("Envoy kept running with a configuration it should refuse:\n{log}"),
        }
    }

    /// A counter from the admin `/stats`, 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        let stats = http::get(
            self.admin_port,
            &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
            &[],
        );
        stats
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A counter or gauge from the admin `/stats`, 0 when absent.
    pub fn stat(&self, name: &str) -> u64 {
        http::get(self.admin_port, "/stats", &[])
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// Envoy is still up and serving its admin interface.
    pub fn healthy(&mut self) -> bool {
        self.proc.alive()
            && http::try_request(self.admin_port, "GET", "/ready", &[], b"")
                .is_ok_and(|r| r.status == 200)
    }

    /// Envoy's Wasm runtime counters that say a VM or plugin failed (`fail`, `crash`,
    /// `reload`), the filters' own `wasmcustom.` counters left out.
    pub fn wasm_failures(&self) -> Vec<(String, u64)> {
        http::get(self.admin_port, "/stats?filter=wasm", &[])
            .body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| !k.starts_with("wasmcustom."))
            .filter(|(k, _)| k.contains("fail") || k.contains("crash") || k.contains("reload"))
            .filter_map(|(k, v)| v.trim().parse::<u64>().ok().map(|v| (k.to_string(), v)))
            .collect()
    }

    /// Envoy is up, the chain's VM (`hipaa-mesh`, or `hipaa-authn` stage by stage) is there in
    /// Envoy's Wasm stats, no VM failed, and no filter trapped or panicked in the log.
    pub fn assert_no_wasm_failure(&mut self) {
        assert!(self.healthy(), "Envoy died:\n{}", self.log());
        let failures = self.wasm_failures();
        let vm = if self.mesh {
            "hipaa-mesh"
        } else {
            "hipaa-authn"
        };
        assert!(
            failures
                .iter()
                .any(|(k, _)| *k == format!("wasm.{vm}.vm_reload")),
            "Envoy's Wasm VM stats for {vm} are missing: {failures:?}"
        );
        assert!(
            failures.iter().all(|(_, v)| *v == 0),
            "Wasm failures: {failures:?}"
        );
        // A trap in a filter VM is logged as `Function: proxy_on_... failed: Uncaught
        // RuntimeError` (faults.rs shows it with a module that traps on demand).
        let log = self.log();
        assert!(
            !log.contains("panicked")
                && !log.contains("Function: proxy_on")
                && !log.contains("Uncaught RuntimeError"),
            "a filter VM failed:\n{log}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flake this guards against: a port `free_port()` found free is taken before Envoy
    /// binds it. Envoy exits with "Address already in use" and is started on fresh ports.
    #[test]
    fn a_port_taken_before_envoy_binds_it_is_replaced() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut topology = Topology::new(free_port(), Vec::new());
        topology.listener_port = taken.local_addr().unwrap().port();
        let mut envoy = Envoy::start(&topology);
        assert_ne!(envoy.port, topology.listener_port);
        assert!(envoy.healthy());
        assert!(wait_for_port(envoy.port, Duration::from_secs(1)));
    }
}
