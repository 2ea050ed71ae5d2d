//! `hipaa-mesh policy render --target istio`: everything a cluster needs for one policy.
//!
//! - One `WasmPlugin`, `pluginName: hipaa-mesh` (the combined root id of `hipaa_mesh.wasm`:
//!   audit, transport and authn as stages of one filter, so one VM per proxy thread — Istio
//!   never shares a VM between WasmPlugins), in phase `AUTHN` so it runs before Istio's own
//!   authentication. It pulls the module as an OCI image (`hipaa-mesh package` writes it)
//!   pinned by `sha256` (for `oci://` URLs Istio compares it with the image's manifest digest,
//!   computed here from the built `.wasm`), `failStrategy: FAIL_RELOAD`, `pluginConfig` = the
//!   policy's `spec`, and the keys passed from the proxy's environment (`valueFrom: HOST`),
//!   never inline. It runs on both sides (`CLIENT_AND_SERVER`): inbound all three stages,
//!   outbound (the app's own calls) audit and transport, so egress to a vendor is checked
//!   against its BAA and recorded.
//! - For providers with `verification: envoy`: a `RequestAuthentication` (Istio renders it
//!   into Envoy's `jwt_authn`, which checks the signature natively and puts the verified
//!   payload into dynamic metadata), and the plugin moves to phase `AUTHZ`, after Istio's
//!   authentication, so that the payload is there when authn runs; a 401 from jwt_authn is
//!   recorded at log time.
//! - `PeerAuthentication` STRICT for the workload (164.312(e)(1), (d) for services).
//! - `DestinationRule` with `ISTIO_MUTUAL` to the audit collector.
//! - A `Sidecar` with `REGISTRY_ONLY` outbound traffic, and per BAA vendor a `ServiceEntry`
//!   (annotated with the BAA id and expiry) plus a `DestinationRule` that originates TLS, so
//!   the sidecar sees the request and the transport filter can check the vendor's BAA.

use crate::oci;
use crate::yaml_out;
use hipaa_core::policy::{PolicyDocument, UnlistedHosts, Verification};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

pub struct IstioOptions {
    pub wasm_dir: PathBuf,
    pub registry: String,
    pub tag: String,
}

/// One rendered file: its name in the output directory and its YAML text.
pub struct Rendered {
    pub file: String,
    pub text: String,
}

/// Warnings that do not stop rendering but that an operator must read.
pub fn warnings(doc: &PolicyDocument) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(audit) = &doc.spec.audit {
        if istio_cluster_host(&audit.collector.cluster).is_none() {
            out.push(format!(
                "spec.audit.collector.cluster `{}` is not an Istio cluster name; inside an Istio sidecar the audit filter can only call clusters named like `outbound|9100||audit-collector.hipaa-system.svc.cluster.local` (with failClosed, PHI requests get 503 once the buffer fills)",
                audit.collector.cluster
            ));
        }
    }
    for (i, p) in doc.spec.identity.providers.iter().enumerate() {
        if p.verification == Verification::Envoy {
            out.push(format!(
                "spec.identity.providers[{i}].verification: envoy — Istio's RequestAuthentication refuses a present but invalid token itself (401 from jwt_authn) before hipaa-mesh runs; the filter still records that 401, with the reason jwt_authn_denied rather than authn's specific one"
            ));
        }
        if let Some(cluster) = &p.jwks.cluster {
            if istio_cluster_host(cluster).is_none() {
                out.push(format!(
                    "spec.identity.providers[{i}].jwks.cluster `{cluster}` is not an Istio cluster name (`outbound|443||idp.example.com`, with a ServiceEntry for the IdP)"
                ));
            }
        }
    }
    out
}

/// `outbound|PORT|SUBSET|HOST` -> HOST.
fn istio_cluster_host(cluster: &str) -> Option<&str> {
    let mut parts = cluster.split('|');
    let (dir, port, _subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (dir == "outbound" && port.parse::<u16>().is_ok() && !host.is_empty() && parts.next().is_none())
        .then_some(host)
}

pub fn render(doc: &PolicyDocument, opts: &IstioOptions) -> Result<Vec<Rendered>, String> {
    check_authority_cluster(doc)?;
    let labels = doc
        .spec
        .workload
        .as_ref()
        .map(|w| w.match_labels.clone())
        .unwrap_or_default();
    if labels.is_empty() {
        return Err(format!(
            "spec.workload.matchLabels is required to render for Istio: without it every resource would apply to every workload in namespace `{}`",
            doc.metadata.namespace
        ));
    }
    let labels = Value::Object(
        labels
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    );
    let name = &doc.metadata.name;
    let ns = &doc.metadata.namespace;
    let spec = serde_json::to_value(&doc.spec).map_err(|e| e.to_string())?;

    let module = crate::render_envoy::MODULE;
    let file = format!("hipaa_{module}.wasm");
    let path = opts.wasm_dir.join(&file);
    let wasm = std::fs::read(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (build the module with `make build`, or point --wasm-dir at it)",
            path.display()
        )
    })?;
    let image = oci::image(&wasm, &file, &opts.tag);
    let mut plugin_spec = json!({
        "selector": {"matchLabels": labels},
        "url": format!("oci://{}/hipaa-{module}:{}", opts.registry.trim_end_matches('/'), opts.tag),
        "imagePullPolicy": "IfNotPresent",
        "sha256": image.manifest_digest,
        "phase": phase(doc),
        // A failed VM is reloaded rather than refusing until the proxy restarts; requests are
        // refused (503) while it is down. The WasmPlugin CRD has no backoff field.
        "failStrategy": "FAIL_RELOAD",
        "type": "HTTP",
        // The root id: the combined filter (audit, transport, authn in one HTTP context).
        "pluginName": format!("hipaa-{module}"),
        "pluginConfig": spec,
        // Both directions: inbound it runs audit, transport and authn; outbound (the app's own
        // calls, no user token) audit and transport, which checks the vendor's BAA.
        "match": [{"mode": "CLIENT_AND_SERVER"}],
    });
    // HOST: the values come from the istio-proxy container's environment, never inline: the
    // record-MAC key and the body-signature keys the routes use, one key per purpose.
    let envs = module_key_envs(doc);
    if !envs.is_empty() {
        let env: Vec<Value> = envs
            .iter()
            .map(|name| json!({"name": name, "valueFrom": "HOST"}))
            .collect();
        plugin_spec["vmConfig"] = json!({ "env": env });
    }
    let plugins = vec![json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": metadata(&format!("{name}-hipaa-{module}"), ns, name, json!({
            "hipaa-mesh/chain": "audit, transport, authn in one filter (one VM per proxy thread)",
            "hipaa-mesh/wasm-sha256": image.wasm_sha256,
        })),
        "spec": plugin_spec,
    })];

    let peer = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": metadata(&format!("{name}-mtls"), ns, name, json!({})),
        "spec": {"selector": {"matchLabels": labels}, "mtls": {"mode": "STRICT"}},
    });

    let mut security = vec![peer];
    if let Some(request_authn) = request_authentication(doc, &labels) {
        security.push(request_authn);
    }
    if let Some(audit) = &doc.spec.audit {
        let host = istio_cluster_host(&audit.collector.cluster)
            .or(audit.collector.authority.as_deref())
            .unwrap_or(&audit.collector.cluster);
        security.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": metadata(&format!("{name}-audit-collector"), ns, name, json!({})),
            "spec": {
                "host": host,
                "exportTo": ["."],
                "workloadSelector": {"matchLabels": labels},
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            },
        }));
    }

    let mode = match doc.spec.egress.unlisted_hosts {
        UnlistedHosts::Deny => "REGISTRY_ONLY",
        // Only valid with an `unlisted-egress` exception; the transport filter still checks.
        UnlistedHosts::Allow => "ALLOW_ANY",
    };
    let mut egress = vec![json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": metadata(&format!("{name}-egress"), ns, name, json!({})),
        "spec": {
            "workloadSelector": {"labels": labels},
            "outboundTrafficPolicy": {"mode": mode},
        },
    })];
    for vendor in &doc.spec.egress.baa_vendors {
        let host = vendor.host.to_ascii_lowercase();
        let slug = host.replace('.', "-");
        let annotations = json!({
            "hipaa-mesh/baa-id": vendor.baa_id,
            "hipaa-mesh/baa-expires": vendor.expires,
        });
        egress.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": metadata(&format!("{name}-baa-{slug}"), ns, name, annotations.clone()),
            "spec": {
                "hosts": [host],
                "exportTo": ["."],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                // The app speaks HTTP to its sidecar (inside the pod); the sidecar sees the
                // request, the transport filter checks the BAA, and TLS starts at the sidecar.
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 443}],
            },
        }));
        egress.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": metadata(&format!("{name}-baa-{slug}-tls"), ns, name, annotations),
            "spec": {
                "host": host,
                "exportTo": ["."],
                "workloadSelector": {"matchLabels": labels},
                "trafficPolicy": {"portLevelSettings": [{
                    "port": {"number": 80},
                    "tls": {"mode": "SIMPLE", "sni": host, "subjectAltNames": [host]},
                }]},
            },
        }));
    }

    let header = |what: &str| {
        format!(
            "# {what} for HipaaPolicy {ns}/{name}.\n# Rendered by `hipaa-mesh policy render --target istio`; edit the policy, not this file.\n"
        )
    };
    Ok(vec![
        Rendered {
            file: "wasmplugins.yaml".into(),
            text: header("The WasmPlugin (audit, transport, authn in one filter)")
                + &yaml_out::documents(&plugins),
        },
        Rendered {
            file: "security.yaml".into(),
            text: header(if envoy_verified(doc) {
                "mTLS: PeerAuthentication STRICT, ISTIO_MUTUAL to the audit collector, and RequestAuthentication (verification: envoy)"
            } else {
                "mTLS: PeerAuthentication STRICT, and ISTIO_MUTUAL to the audit collector"
            }) + &yaml_out::documents(&security),
        },
        Rendered {
            file: "egress.yaml".into(),
            text: header("Egress: registry-only, and one ServiceEntry per BAA-covered vendor")
                + &yaml_out::documents(&egress),
        },
    ])
}

fn envoy_verified(doc: &PolicyDocument) -> bool {
    doc.spec
        .identity
        .providers
        .iter()
        .any(|p| p.verification == Verification::Envoy)
}

/// The plugin runs in phase AUTHN, before Istio's authentication; it moves to AUTHZ (after
/// Istio's jwt_authn, before its RBAC) when a provider's signatures are checked by Envoy, so
/// the verified payload is in the dynamic metadata when authn reads it. A token jwt_authn
/// refuses (401) is still recorded: the filter seals the record at log time from the
/// `request.headers` attribute (reason `jwt_authn_denied`).
fn phase(doc: &PolicyDocument) -> &'static str {
    if envoy_verified(doc) {
        "AUTHZ"
    } else {
        "AUTHN"
    }
}

/// The `RequestAuthentication` for the providers with `verification: envoy`: the issuer,
/// audiences and key set of the policy, the token read where authn reads it and forwarded
/// (authn parses it too). Istio stores the verified payload in jwt_authn's dynamic metadata.
fn request_authentication(doc: &PolicyDocument, labels: &Value) -> Option<Value> {
    let rules: Vec<Value> = doc
        .spec
        .identity
        .providers
        .iter()
        .filter(|p| p.verification == Verification::Envoy)
        .filter_map(|p| {
            let mut rule = json!({
                "issuer": p.issuer,
                "audiences": p.audiences,
                "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
                "forwardOriginalToken": true,
            });
            match (&p.jwks.inline, &p.jwks.cluster) {
                (Some(inline), _) => rule["jwks"] = json!(inline),
                (None, Some(cluster)) => {
                    let host = p
                        .jwks
                        .authority
                        .as_deref()
                        .or_else(|| istio_cluster_host(cluster))
                        .unwrap_or(cluster);
                    let path = p.jwks.path.as_deref().unwrap_or("/");
                    rule["jwksUri"] = json!(format!("https://{host}{path}"));
                    if let Some(ms) = p.jwks.timeout_ms {
                        rule["timeout"] = json!(format!("{}ms", ms));
                    }
                }
                (None, None) => return None,
            }
            Some(rule)
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    let name = &doc.metadata.name;
    Some(json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": metadata(&format!("{name}-jwt"), &doc.metadata.namespace, name, json!({
            "hipaa-mesh/verification": "envoy: Envoy checks the signatures, hipaa-authn the HIPAA rules",
        })),
        "spec": {"selector": {"matchLabels": labels}, "jwtRules": rules},
    }))
}

/// The environment variable the audit filter reads the record-MAC key from (never the key
/// itself).
pub fn mac_key_env(doc: &PolicyDocument) -> &str {
    doc.spec
        .audit
        .as_ref()
        .map_or("HIPAA_AUDIT_HMAC_KEY", |a| a.mac_key_env.as_str())
}

/// The environment variables the hipaa-mesh VM is given (names, never values): the record-MAC
/// key and the body keys the policy's routes use, one key per purpose (issue #13); a key no
/// route uses is not passed.
pub fn module_key_envs(doc: &PolicyDocument) -> Vec<&str> {
    let mut envs = vec![mac_key_env(doc)];
    for env in hipaa_core::integrity::transport_key_envs_of(&doc.spec) {
        if !envs.contains(&env) {
            envs.push(env);
        }
    }
    // The session authority's request/answer key (issue #16), its own purpose.
    if let Some(a) = &doc.spec.identity.session.authority {
        if !envs.contains(&a.key_env.as_str()) {
            envs.push(a.key_env.as_str());
        }
    }
    envs
}

/// The session authority is called on the audit collector's cluster, the one cluster the
/// renderers make reachable (over mTLS) for the filter's calls; another is refused here rather
/// than rendered unreachable.
pub fn check_authority_cluster(doc: &PolicyDocument) -> Result<(), String> {
    let (Some(a), Some(audit)) = (&doc.spec.identity.session.authority, &doc.spec.audit) else {
        return Ok(());
    };
    if a.cluster != audit.collector.cluster {
        return Err(format!(
            "spec.identity.session.authority.cluster `{}` must be the audit collector's cluster `{}` (the collector is the session authority, and the only cluster rendered for the filter's calls)",
            a.cluster, audit.collector.cluster
        ));
    }
    Ok(())
}

fn metadata(resource: &str, ns: &str, policy: &str, annotations: Value) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(resource));
    m.insert("namespace".into(), json!(ns));
    m.insert(
        "labels".into(),
        json!({"app.kubernetes.io/managed-by": "hipaa-mesh", "hipaa-mesh/policy": policy}),
    );
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        m.insert("annotations".into(), annotations);
    }
    Value::Object(m)
}

/// Write the rendered files into `dir` (created if needed).
pub fn write(files: &[Rendered], dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for f in files {
        let path = dir.join(&f.file);
        std::fs::write(&path, &f.text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
