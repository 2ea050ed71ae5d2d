//! Envoy configurations for the tests and a running Envoy.
//!
//! Configs are built as JSON (which is YAML) so the policy can be embedded without quoting.

use crate::process::{wait_for_port, Proc};
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
}

impl Topology {
    pub fn new(upstream_port: u16, filters: Vec<Filter>) -> Topology {
        Topology {
            listener_port: free_port(),
            admin_port: free_port(),
            upstream_port,
            filters,
            clusters: Vec::new(),
            vm_env: Vec::new(),
            concurrency: 2,
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
        json!({
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
        })
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
    _dir: TempDir,
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
    pub fn start_edited(topology: &Topology, edit: impl FnOnce(&mut Value)) -> Envoy {
        let dir = TempDir::new("envoy");
        let mut config = topology.config();
        edit(&mut config);
        let mut proc = Envoy::spawn(&config, topology.concurrency, &dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !proc.alive() {
                panic!("Envoy exited at start:\n{}", proc.log_text());
            }
            if wait_for_port(topology.admin_port, Duration::from_millis(100)) {
                if let Ok(r) = http::try_request(topology.admin_port, "GET", "/ready", &[], b"") {
                    if r.status == 200
                        && wait_for_port(topology.listener_port, Duration::from_millis(100))
                    {
                        break;
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
        Envoy {
            port: topology.listener_port,
            admin_port: topology.admin_port,
            proc,
            _dir: dir,
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
}
