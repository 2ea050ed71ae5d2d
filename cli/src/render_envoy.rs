//! `hipaa-mesh policy render --target envoy`: complete Envoy bootstraps for one workload.
//!
//! - `envoy.yaml`, the workload's sidecar:
//!   - an **inbound** listener (`traffic_direction: INBOUND`) with the one `hipaa-mesh` filter
//!     (`hipaa_mesh.wasm`, root id `hipaa-mesh`: audit, transport and authn as stages of one
//!     HTTP context, one VM per worker) and the router in front of the app. TLS is pinned to the policy's `minTlsVersion` (TLS 1.2
//!     at least) with AEAD suites only, and a presented client certificate is validated against
//!     the mesh CA (`connection.mtls` only says one was presented; validation is the TLS
//!     layer's job). A missing certificate, a peer not on `allowedPeers` and plaintext are left
//!     to the transport filter, so they get a 403 *and an audit record*; plaintext is accepted
//!     on its own filter chain only for that (and for `allowPlaintext` probe routes).
//!   - an **outbound** listener (`OUTBOUND`), when the policy lists BAA vendors: the app sends
//!     plain HTTP to it (as it would to an Istio sidecar), the same filter (same VM; on an
//!     outbound listener it runs audit and transport only) checks the host against the vendors'
//!     BAAs, and Envoy originates TLS 1.2+ to the vendor, validating its
//!     certificate and name.
//!   - for providers with `verification: envoy`, Envoy's native `jwt_authn` in front of the
//!     hipaa-mesh filter: it checks the signature (remote JWKS through the provider's cluster, or the
//!     inline set), writes the verified payload into dynamic metadata and never refuses by
//!     itself (`allow_missing_or_failed`), so authn answers every denial.
//!   - clusters: the app, the audit collector (**mTLS**: the workload's certificate, the
//!     collector's identity pinned), each remote JWKS (TLS, name pinned) and each vendor.
//! - `collector-sidecar.yaml`: the collector's own sidecar, which terminates that mTLS (client
//!   certificates required and validated) and passes only `POST <path>` and `GET /healthz` to
//!   the collector on loopback; record queries never cross the mesh.
//!
//! Every address, the certificate folder and the module folder are options, so the same policy
//! renders for a laptop, for the tests and for `envoy/docker-compose.yaml`.

use crate::render_istio::Rendered;
use crate::yaml_out;
use hipaa_core::policy::{PolicyDocument, UnlistedHosts, Verification};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The one module and its combined root id: audit, transport and authn in one filter (on an
/// outbound listener the app's calls carry no user token, and the filter runs audit and
/// transport only: it reads the listener's direction).
pub const MODULE: &str = "mesh";
const FILTER_NAME: &str = "hipaa-mesh";
const APP_CLUSTER: &str = "hipaa-local-app";
const COLLECTOR_BACKEND_CLUSTER: &str = "hipaa-collector-backend";
/// NIST SP 800-52r2: ECDHE with AEAD only for TLS 1.2 (TLS 1.3 suites are all AEAD).
const TLS12_CIPHERS: [&str; 6] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

pub struct EnvoyOptions {
    pub wasm_dir: PathBuf,
    /// `ca.pem`, `workload.pem` / `workload-key.pem`, `collector.pem` / `collector-key.pem`.
    pub certs: PathBuf,
    /// The CA bundle that vendors' and IdPs' public certificates are checked against.
    pub public_ca: PathBuf,
    pub inbound: String,
    pub outbound: String,
    pub admin: String,
    pub app: String,
    /// Where the collector's sidecar listens (mTLS); default: from the collector cluster name.
    pub collector: Option<String>,
    /// The collector process itself, behind its sidecar.
    pub collector_backend: String,
    pub collector_admin: String,
    /// The collector's identity, pinned by the workload's mTLS client.
    pub collector_identity: String,
    /// `CLUSTER=HOST:PORT`: where a named cluster (a JWKS, a vendor) really is.
    pub endpoints: Vec<(String, String)>,
    /// The workload's own SPIFFE id (its audit filter's identity at the collector); default
    /// [`workload_identity`].
    pub workload_identity: Option<String>,
}

/// Which identities may post records to which collector path: path -> SPIFFE ids.
pub type Senders = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// The trust domain of a SPIFFE id (`spiffe://TD/...` -> TD).
pub fn trust_domain(spiffe_id: &str) -> Result<&str, String> {
    spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .filter(|td| !td.is_empty())
        .ok_or_else(|| format!("`{spiffe_id}` is not a SPIFFE id (spiffe://trust-domain/path)"))
}

/// The SPIFFE id a policy's workload runs as, the identity its audit filter presents to the
/// collector: `given` when set, else Istio's form with the policy's namespace and its name as
/// the service account, in the collector's trust domain:
/// `spiffe://TD/ns/<metadata.namespace>/sa/<metadata.name>`.
pub fn workload_identity(
    doc: &PolicyDocument,
    collector_identity: &str,
    given: Option<&str>,
) -> Result<String, String> {
    if let Some(id) = given {
        trust_domain(id)?;
        return Ok(id.to_string());
    }
    Ok(format!(
        "spiffe://{}/ns/{}/sa/{}",
        trust_domain(collector_identity)?,
        doc.metadata.namespace,
        doc.metadata.name
    ))
}

/// Warnings that do not stop rendering but that an operator must read.
pub fn warnings(doc: &PolicyDocument, opts: &EnvoyOptions) -> Vec<String> {
    let mut out = Vec::new();
    let path = module_path(opts);
    if !path.is_file() {
        out.push(format!(
            "{} does not exist (yet): build the module (`make build`) before starting Envoy, or point --wasm-dir at it",
            path.display()
        ));
    }
    if !doc.spec.egress.mesh_hosts.is_empty() && !doc.spec.egress.baa_vendors.is_empty() {
        out.push("egress.meshHosts are routed by the mesh (Istio); the rendered outbound listener routes only the listed BAA vendors".into());
    }
    if doc.spec.egress.unlisted_hosts == UnlistedHosts::Allow {
        out.push("egress.unlistedHosts is allow, but the rendered outbound listener routes only the listed BAA vendors; other hosts get 403 from Envoy".into());
    }
    out
}

pub fn render(doc: &PolicyDocument, opts: &EnvoyOptions) -> Result<Vec<Rendered>, String> {
    crate::render_istio::check_authority_cluster(doc)?;
    let spec_json = serde_json::to_string(&doc.spec).map_err(|e| e.to_string())?;
    let key_envs = crate::render_istio::module_key_envs(doc);
    let filters = || -> Vec<Value> {
        vec![
            wasm_filter(&spec_json, &key_envs, opts),
            json!({
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
            }),
        ]
    };
    let min_tls = match doc.spec.transport.min_tls_version {
        hipaa_core::policy::TlsVersion::Tls13 => "TLSv1_3",
        hipaa_core::policy::TlsVersion::Tls12 => "TLSv1_2",
    };

    let (routes, buffering) = inbound_routes(doc);
    let inbound_routes =
        json!({"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": routes}]});
    let mut inbound_filters = filters();
    if let Some(jwt_authn) = jwt_authn_filter(doc) {
        // In front of the hipaa-mesh filter, so the verified payload is there when authn
        // runs; it never refuses by itself (`allow_missing_or_failed`).
        inbound_filters.insert(0, jwt_authn);
    }
    if buffering {
        inbound_filters.insert(inbound_filters.len() - 1, buffer_filter());
    }
    let inbound_hcm = hcm("inbound", inbound_routes, inbound_filters, false);
    let mut listeners = vec![json!({
        "name": "inbound",
        "traffic_direction": "INBOUND",
        "address": socket_address(&opts.inbound)?,
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }],
        "filter_chains": [
            {
                "name": "inbound-tls",
                "filter_chain_match": {"transport_protocol": "tls"},
                "transport_socket": downstream_tls(opts, "workload", min_tls, false),
                "filters": [inbound_hcm.clone()]
            },
            {
                // Accepted only so the transport filter can answer it with a 403 and an audit
                // record (or serve an `allowPlaintext` probe route); never a PHI pass.
                "name": "inbound-plaintext",
                "filter_chain_match": {"transport_protocol": "raw_buffer"},
                "filters": [inbound_hcm]
            }
        ]
    })];

    let mut clusters = vec![cluster(APP_CLUSTER, &opts.app, None)?];
    let vendors = &doc.spec.egress.baa_vendors;
    if !vendors.is_empty() {
        let mut hosts: Vec<Value> = Vec::new();
        for v in vendors {
            let host = v.host.trim_end_matches('.').to_ascii_lowercase();
            let name = format!("egress|{host}");
            hosts.push(json!({
                "name": host, "domains": [host],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "120s", "auto_host_rewrite": true}}]
            }));
            let address = endpoint(opts, &name).unwrap_or(format!("{host}:443"));
            let tls = upstream_tls(&host, &opts.public_ca, None, san_dns(&host));
            clusters.push(cluster(&name, &address, Some(tls))?);
        }
        hosts.push(json!({
            "name": "not-a-baa-vendor", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 403, "body": {"inline_string": "{\"error\":\"access_denied\",\"error_description\":\"no route: the host is not a listed BAA vendor\"}"}}}]
        }));
        let mut outbound_hcm = hcm("outbound", json!({"virtual_hosts": hosts}), filters(), true);
        outbound_hcm["typed_config"]["strip_any_host_port"] = json!(true);
        listeners.push(json!({
            "name": "outbound",
            "traffic_direction": "OUTBOUND",
            "address": socket_address(&opts.outbound)?,
            "filter_chains": [{"name": "outbound-http", "filters": [outbound_hcm]}]
        }));
    }

    for p in &doc.spec.identity.providers {
        let Some(name) = &p.jwks.cluster else {
            continue;
        };
        if clusters.iter().any(|c| c["name"] == json!(name)) {
            continue;
        }
        let host = p
            .jwks
            .authority
            .clone()
            .or_else(|| istio_host(name).map(String::from))
            .unwrap_or_else(|| name.clone());
        let host = host.split(':').next().unwrap_or(&host).to_string();
        let address = endpoint(opts, name)
            .or_else(|| istio_address(name))
            .unwrap_or(format!("{host}:443"));
        let tls = upstream_tls(&host, &opts.public_ca, None, san_dns(&host));
        clusters.push(cluster(name, &address, Some(tls))?);
    }

    let mut files = Vec::new();
    if let Some(audit) = &doc.spec.audit {
        let name = &audit.collector.cluster;
        let host = audit
            .collector
            .authority
            .clone()
            .or_else(|| istio_host(name).map(String::from))
            .unwrap_or_else(|| name.clone());
        let address = opts
            .collector
            .clone()
            .or_else(|| endpoint(opts, name))
            .or_else(|| istio_address(name))
            .ok_or_else(|| {
                format!("where is the audit collector? `{name}` is not an Istio cluster name; pass --collector HOST:PORT")
            })?;
        let identity = json!([{"san_type": "URI", "matcher": {"exact": opts.collector_identity}}]);
        let certificate = cert_pair(opts, "workload");
        let tls = upstream_tls(
            &host,
            &opts.certs.join("ca.pem"),
            Some(certificate),
            identity,
        );
        clusters.push(cluster(name, &address, Some(tls))?);
        // This policy's own collector sidecar takes records from this workload only; a
        // collector shared by several workloads is rendered from all their policies
        // (`policy render-collector`).
        let me = workload_identity(
            doc,
            &opts.collector_identity,
            opts.workload_identity.as_deref(),
        )?;
        let mut senders = Senders::new();
        senders
            .entry(audit.collector.path.clone())
            .or_default()
            .insert(me);
        files.push(Rendered {
            file: "collector-sidecar.yaml".into(),
            text: header(doc, "The audit collector's sidecar (mTLS in, records only from the audit filters' identities)")
                + &yaml_out::to_yaml(&collector_sidecar(opts, &address, &senders)?),
        });
    }

    let bootstrap = json!({
        "node": {"id": format!("{}.{}", doc.metadata.name, doc.metadata.namespace), "cluster": doc.metadata.name},
        "admin": {"address": socket_address(&opts.admin)?},
        "overload_manager": overload_manager(),
        "static_resources": {"listeners": listeners, "clusters": clusters}
    });
    files.insert(
        0,
        Rendered {
            file: "envoy.yaml".into(),
            text: header(
                doc,
                "The workload's sidecar: inbound and outbound listeners",
            ) + &yaml_out::to_yaml(&bootstrap),
        },
    );
    Ok(files)
}

/// Envoy's `jwt_authn` for the providers with `verification: envoy`, or None when there are
/// none. Each provider reads the token where authn does (`Authorization: Bearer`), keeps it
/// in the request (`forward`: authn parses it too) and stores the verified payload in dynamic
/// metadata under [`hipaa_core::jwt::envoy::PAYLOAD_KEY`], as Istio does. The requirement
/// never refuses (`allow_missing_or_failed`): a missing, forged or expired token reaches
/// authn without a payload, and authn answers it (RFC 6750 challenge, `x-hipaa-denial` for
/// the audit record).
fn jwt_authn_filter(doc: &PolicyDocument) -> Option<Value> {
    let mut providers = serde_json::Map::new();
    let mut requirements = Vec::new();
    for p in &doc.spec.identity.providers {
        if p.verification != Verification::Envoy {
            continue;
        }
        let jwks = match (&p.jwks.inline, &p.jwks.cluster) {
            (Some(inline), _) => json!({"local_jwks": {"inline_string": inline}}),
            (None, Some(cluster)) => {
                let host = p
                    .jwks
                    .authority
                    .clone()
                    .or_else(|| istio_host(cluster).map(String::from))
                    .unwrap_or_else(|| cluster.clone());
                let path = p.jwks.path.as_deref().unwrap_or("/");
                let timeout_ms = p.jwks.timeout_ms.unwrap_or(5000);
                json!({"remote_jwks": {
                    "http_uri": {
                        "uri": format!("https://{host}{path}"),
                        "cluster": cluster,
                        "timeout": format!("{}.{:03}s", timeout_ms / 1000, timeout_ms % 1000),
                    },
                    "cache_duration": format!("{}s", p.jwks.refresh_seconds.unwrap_or(300)),
                    // Fetched at start and refreshed in the background, not on a request.
                    "async_fetch": {},
                    "retry_policy": {"num_retries": 3},
                }})
            }
            (None, None) => continue,
        };
        let mut provider = json!({
            "issuer": p.issuer,
            "audiences": p.audiences,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "forward": true,
            "payload_in_metadata": hipaa_core::jwt::envoy::PAYLOAD_KEY,
            "clock_skew_seconds": p.clock_skew_seconds,
        });
        if let (Some(provider), Some(jwks)) = (provider.as_object_mut(), jwks.as_object()) {
            provider.extend(jwks.clone());
        }
        providers.insert(p.name.clone(), provider);
        requirements.push(json!({"provider_name": p.name}));
    }
    if providers.is_empty() {
        return None;
    }
    requirements.push(json!({"allow_missing_or_failed": {}}));
    Some(json!({
        "name": hipaa_core::jwt::envoy::NAMESPACE,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": requirements}}}]
        }
    }))
}

const BUFFER_FILTER: &str = "envoy.filters.http.buffer";
const BUFFER_PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute";

/// The inbound routes, all to the app. For each `verifyRequests` route, its write requests go
/// through Envoy's buffer filter first, which holds the headers back until the whole body is
/// in: transport checks the body's signature before the upstream sees anything of the request
/// (Proxy-Wasm cannot hold request headers while it reads the body). Everything else streams.
fn inbound_routes(doc: &PolicyDocument) -> (Vec<Value>, bool) {
    let to_app = json!({"cluster": APP_CLUSTER, "timeout": "30s"});
    let max = doc.spec.transport.max_body_bytes;
    let mut routes = Vec::new();
    for r in doc.spec.routes.iter().filter(|r| r.verify_requests) {
        let mut matcher = match (&r.matcher.path, &r.matcher.path_prefix) {
            (Some(path), _) => json!({"path": path}),
            (None, Some(prefix)) => json!({"prefix": prefix}),
            (None, None) => json!({"prefix": "/"}),
        };
        let writes: Vec<&str> = hipaa_core::transport::WRITE_METHODS
            .into_iter()
            .filter(|m| r.matcher.methods.is_empty() || r.matcher.methods.iter().any(|x| x == m))
            .collect();
        matcher["headers"] = json!([{"name": ":method", "string_match": {"safe_regex": {"regex": writes.join("|")}}}]);
        routes.push(json!({
            "name": format!("{}-verified-writes", r.name),
            "match": matcher,
            "route": to_app,
            "typed_per_filter_config": {BUFFER_FILTER: {"@type": BUFFER_PER_ROUTE, "buffer": {"max_request_bytes": max}}}
        }));
    }
    let buffering = !routes.is_empty();
    let mut rest = json!({"name": "app", "match": {"prefix": "/"}, "route": to_app});
    if buffering {
        rest["typed_per_filter_config"] =
            json!({BUFFER_FILTER: {"@type": BUFFER_PER_ROUTE, "disabled": true}});
    }
    routes.push(rest);
    (routes, buffering)
}

fn buffer_filter() -> Value {
    json!({
        "name": BUFFER_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 1_048_576
        }
    })
}

fn header(doc: &PolicyDocument, what: &str) -> String {
    format!(
        "# {what}, for HipaaPolicy {}/{}.\n# Rendered by `hipaa-mesh policy render --target envoy`; edit the policy, not this file.\n",
        doc.metadata.namespace, doc.metadata.name
    )
}

fn module_path(opts: &EnvoyOptions) -> PathBuf {
    opts.wasm_dir.join(format!("hipaa_{MODULE}.wasm"))
}

fn endpoint(opts: &EnvoyOptions, cluster: &str) -> Option<String> {
    opts.endpoints
        .iter()
        .find(|(name, _)| name == cluster)
        .map(|(_, address)| address.clone())
}

/// `outbound|PORT|SUBSET|HOST` -> HOST.
fn istio_host(cluster: &str) -> Option<&str> {
    let parts: Vec<&str> = cluster.split('|').collect();
    match parts.as_slice() {
        ["outbound", port, _, host] if port.parse::<u16>().is_ok() && !host.is_empty() => {
            Some(host)
        }
        _ => None,
    }
}

/// `outbound|PORT|SUBSET|HOST` -> `HOST:PORT`.
fn istio_address(cluster: &str) -> Option<String> {
    let port = cluster.split('|').nth(1)?;
    istio_host(cluster).map(|host| format!("{host}:{port}"))
}

fn split_address(address: &str) -> Result<(&str, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}` is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{address}`: the port is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    Ok((host, port))
}

/// Where to listen for an address others dial: the address itself when it is an IP, else
/// every interface on its port.
fn bind_address(address: &str) -> Result<String, String> {
    let (host, port) = split_address(address)?;
    Ok(if host.parse::<std::net::IpAddr>().is_ok() {
        address.to_string()
    } else {
        format!("0.0.0.0:{port}")
    })
}

fn socket_address(address: &str) -> Result<Value, String> {
    let (host, port) = split_address(address)?;
    Ok(json!({"socket_address": {"address": host, "port_value": port}}))
}

/// A cluster of one endpoint: STATIC for an IP address, LOGICAL_DNS for a name.
fn cluster(name: &str, address: &str, tls: Option<Value>) -> Result<Value, String> {
    let (host, _) = split_address(address)?;
    let kind = if host.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "LOGICAL_DNS"
    };
    let mut c = json!({
        "name": name,
        "type": kind,
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket_address(address)?}}
        ]}]}
    });
    if kind == "LOGICAL_DNS" {
        c["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if let Some(tls) = tls {
        c["transport_socket"] = tls;
    }
    Ok(c)
}

fn tls_params(min: &str) -> Value {
    json!({
        "tls_minimum_protocol_version": min,
        "tls_maximum_protocol_version": "TLSv1_3",
        "cipher_suites": TLS12_CIPHERS,
    })
}

fn cert_pair(opts: &EnvoyOptions, name: &str) -> Value {
    json!({
        "certificate_chain": {"filename": path_text(&opts.certs.join(format!("{name}.pem")))},
        "private_key": {"filename": path_text(&opts.certs.join(format!("{name}-key.pem")))}
    })
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn san_dns(host: &str) -> Value {
    json!([{"san_type": "DNS", "matcher": {"exact": host}}])
}

/// Server-side TLS: the named certificate, presented client certificates validated against the
/// mesh CA; `require_client` makes a missing one a handshake failure.
fn downstream_tls(opts: &EnvoyOptions, name: &str, min: &str, require_client: bool) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": require_client,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": tls_params(min),
                "tls_certificates": [cert_pair(opts, name)],
                "validation_context": {"trusted_ca": {"filename": path_text(&opts.certs.join("ca.pem"))}}
            }
        }
    })
}

/// Client-side TLS 1.2+: the server's certificate validated against `ca` and its name pinned
/// (`sans`); `certificate` makes it mTLS.
fn upstream_tls(sni: &str, ca: &Path, certificate: Option<Value>, sans: Value) -> Value {
    let mut common = json!({
        "tls_params": tls_params("TLSv1_2"),
        "validation_context": {
            "trusted_ca": {"filename": path_text(ca)},
            "match_typed_subject_alt_names": sans
        }
    });
    if let Some(c) = certificate {
        common["tls_certificates"] = json!([c]);
    }
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": common
        }
    })
}

fn wasm_filter(spec_json: &str, key_envs: &[&str], opts: &EnvoyOptions) -> Value {
    // One VM per worker for both listeners: same vm_id, code, configuration and environment,
    // so Envoy shares the VM (and one record chain per worker VM).
    let mut filter = json!({
        "name": FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": FILTER_NAME,
                "root_id": FILTER_NAME,
                // A VM that fails (a trap, a panic) is replaced by a fresh one on a later request
                // instead of refusing every request until Envoy restarts; while it is down, and
                // during the backoff, requests through it are refused with 503 (fail closed).
                "failure_policy": "FAIL_RELOAD",
                "reload_config": {"backoff": {"base_interval": "1s", "max_interval": "10s"}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": spec_json},
                "vm_config": {
                    "vm_id": FILTER_NAME,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": path_text(&module_path(opts))}}
                }
            }
        }
    });
    // The keys come from Envoy's own environment, never from this file: the record-MAC key and
    // the body keys the policy's routes use (one key per purpose, all in the one VM).
    if !key_envs.is_empty() {
        filter["typed_config"]["config"]["vm_config"]["environment_variables"] =
            json!({ "host_env_keys": key_envs });
    }
    filter
}

/// The HTTP connection manager both sides share: normalised paths, no spoofable client
/// certificate header, trailers (response signatures), bounded headers and idle streams.
fn hcm(name: &str, routes: Value, filters: Vec<Value>, outbound: bool) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "use_remote_address": !outbound,
            "forward_client_cert_details": "SANITIZE",
            "normalize_path": true,
            "merge_slashes": true,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "http_protocol_options": {"enable_trailers": true},
            "common_http_protocol_options": {
                "headers_with_underscores_action": "REJECT_REQUEST",
                "idle_timeout": "300s",
                "max_headers_count": 100
            },
            "max_request_headers_kb": 60,
            "request_headers_timeout": "10s",
            "stream_idle_timeout": "300s",
            "route_config": routes,
            "http_filters": filters
        }
    })
}

/// Bounded downstream connections (Envoy warns without a limit on untrusted listeners).
fn overload_manager() -> Value {
    json!({"resource_monitors": [{
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
            "max_active_downstream_connections": 50000
        }
    }]})
}

/// The collector's sidecar: mTLS required; then Envoy's RBAC filter lets through only
/// `POST <path>` from the SPIFFE ids (the peer certificate's URI SAN) that `senders` lists for
/// that path, and `GET /healthz`; everything else is 403. The sender's identity goes to the
/// collector in `x-forwarded-client-cert` (set here, any client copy replaced), which keys the
/// collector's per-source garbage budget. Reads never cross the mesh (the collector's
/// `--read-listen` port is not behind this sidecar).
pub fn collector_sidecar(
    opts: &EnvoyOptions,
    listen: &str,
    senders: &Senders,
) -> Result<Value, String> {
    let denied = json!({"status": 403, "body": {"inline_string": "{\"error\":\"access_denied\",\"error_description\":\"only record batches cross the mesh; query the collector on its read port\"}"}});
    let method = |m: &str| json!({"header": {"name": ":method", "string_match": {"exact": m}}});
    let mut routes = Vec::new();
    let mut policies = serde_json::Map::new();
    for (i, (path, ids)) in senders.iter().enumerate() {
        routes.push(json!({"match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]},
             "route": {"cluster": COLLECTOR_BACKEND_CLUSTER, "timeout": "30s"}}));
        let principals: Vec<Value> = ids
            .iter()
            .map(|id| json!({"authenticated": {"principal_name": {"exact": id}}}))
            .collect();
        policies.insert(
            format!("audit-filters-{i}"),
            json!({
                "permissions": [{"and_rules": {"rules": [method("POST"), {"url_path": {"path": {"exact": path}}}]}}],
                "principals": principals,
            }),
        );
    }
    routes.push(json!({"match": {"path": "/healthz", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
             "route": {"cluster": COLLECTOR_BACKEND_CLUSTER, "timeout": "5s"}}));
    routes.push(json!({"match": {"prefix": "/"}, "direct_response": denied}));
    policies.insert(
        "health".into(),
        json!({
            "permissions": [{"and_rules": {"rules": [method("GET"), {"url_path": {"path": {"exact": "/healthz"}}}]}}],
            "principals": [{"any": true}],
        }),
    );
    let routes =
        json!({"virtual_hosts": [{"name": "collector", "domains": ["*"], "routes": routes}]});
    let rbac = json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": policies}
        }
    });
    let router = json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    });
    let mut manager = hcm("collector", routes, vec![rbac, router], false);
    manager["typed_config"]["http_protocol_options"] = json!({});
    manager["typed_config"]["forward_client_cert_details"] = json!("SANITIZE_SET");
    manager["typed_config"]["set_current_client_cert_details"] = json!({"uri": true});
    Ok(json!({
        "node": {"id": "audit-collector", "cluster": "audit-collector"},
        "admin": {"address": socket_address(&opts.collector_admin)?},
        "overload_manager": overload_manager(),
        "static_resources": {
            "listeners": [{
                "name": "collector-inbound",
                "traffic_direction": "INBOUND",
                "address": socket_address(&bind_address(listen)?)?,
                "filter_chains": [{
                    "transport_socket": downstream_tls(opts, "collector", "TLSv1_2", true),
                    "filters": [manager]
                }]
            }],
            "clusters": [cluster(COLLECTOR_BACKEND_CLUSTER, &opts.collector_backend, None)?]
        }
    }))
}
