//! `hipaa-mesh policy render-collector POLICY... --target istio|envoy --out DIR`: the audit
//! collector's ingest allow-list, from the policies of every workload that sends it records.
//! Only those workloads' audit filters may write (issue #13 item 4): a mesh certificate alone
//! is not enough.
//!
//! - `--target istio`: `collector-authz.yaml`, a `PeerAuthentication` STRICT and an
//!   `AuthorizationPolicy` (action ALLOW) on the collector pods: `POST <path>` only from the
//!   workloads' principals (`TD/ns/NS/sa/SA`); with an ALLOW policy in place Istio answers
//!   every other request to the collector's sidecar 403. Kubelet probes are rewritten by
//!   Istio to the agent's port and do not pass this sidecar.
//! - `--target envoy`: `collector-sidecar.yaml`, the collector's sidecar with mTLS required and
//!   an RBAC filter on the peer certificate's URI SAN (see `render_envoy::collector_sidecar`).
//!
//! A workload's identity is `spiffe://TD/ns/<metadata.namespace>/sa/<metadata.name>` in the
//! collector's trust domain, unless `--identity NAME=SPIFFE_ID` names it.

use crate::render_cmd::Target;
use crate::render_envoy::{self, EnvoyOptions, Senders};
use crate::render_istio::{self, Rendered};
use crate::yaml_out;
use clap::Args;
use hipaa_core::policy::safety::safety_errors;
use hipaa_core::policy::PolicyDocument;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct RenderCollectorArgs {
    /// The HipaaPolicy files of every workload that sends records to this collector.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum)]
    pub target: Target,
    /// Directory for the rendered file (created if needed; an existing file is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// The collector's SPIFFE id: its trust domain is the workloads' (default identities), its
    /// namespace the AuthorizationPolicy's.
    #[arg(
        long,
        default_value = "spiffe://cluster.local/ns/hipaa-system/sa/audit-collector"
    )]
    pub collector_identity: String,
    /// NAME=SPIFFE_ID, repeatable: the identity of the workload whose policy is named NAME
    /// (metadata.name), when it is not spiffe://TD/ns/NAMESPACE/sa/NAME.
    #[arg(long = "identity", value_parser = parse_pair)]
    pub identities: Vec<(String, String)>,
    /// KEY=VALUE, repeatable: the collector pods' labels (Istio). Default app=audit-collector.
    #[arg(long = "collector-label", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Certificates for the Envoy sidecar: ca.pem, collector.pem + collector-key.pem.
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// Where the collector's sidecar listens (mTLS).
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub collector: String,
    /// The collector process (its ingest --listen), behind the sidecar.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub collector_backend: String,
    /// The collector sidecar's admin interface.
    #[arg(long, default_value = "127.0.0.1:15100")]
    pub collector_admin: String,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: expected NAME=VALUE"))
}

pub fn run(args: RenderCollectorArgs) -> Result<ExitCode, String> {
    let mut senders = Senders::new();
    let mut names = Vec::new();
    let mut failed = false;
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let doc = match PolicyDocument::compile(&text) {
            Ok((doc, _)) if safety_errors(&doc.spec).is_empty() => doc,
            Ok((doc, _)) => {
                report(file, safety_errors(&doc.spec));
                failed = true;
                continue;
            }
            Err(errors) => {
                report(file, errors);
                failed = true;
                continue;
            }
        };
        let Some(audit) = &doc.spec.audit else {
            eprintln!(
                "warning: {} has no audit section: it sends no records",
                file.display()
            );
            continue;
        };
        let given = args
            .identities
            .iter()
            .find(|(name, _)| *name == doc.metadata.name)
            .map(|(_, id)| id.as_str());
        let id = render_envoy::workload_identity(&doc, &args.collector_identity, given)?;
        names.push(format!("{}/{}", doc.metadata.namespace, doc.metadata.name));
        senders
            .entry(audit.collector.path.clone())
            .or_default()
            .insert(id);
    }
    if failed {
        return Ok(ExitCode::from(1));
    }
    if senders.is_empty() {
        return Err("no policy sends records: nothing may write to the collector".into());
    }
    for (name, _) in &args.identities {
        if !names.iter().any(|n| n.ends_with(&format!("/{name}"))) {
            return Err(format!(
                "--identity {name}=...: no policy of that name was given"
            ));
        }
    }
    let file = match args.target {
        Target::Istio => Rendered {
            file: "collector-authz.yaml".into(),
            text: header(&names, "istio") + &yaml_out::documents(&istio(&args, &senders)?),
        },
        Target::Envoy => {
            let opts = EnvoyOptions {
                wasm_dir: PathBuf::new(),
                certs: args.certs.clone(),
                public_ca: PathBuf::new(),
                inbound: String::new(),
                outbound: String::new(),
                admin: String::new(),
                app: String::new(),
                collector: Some(args.collector.clone()),
                collector_backend: args.collector_backend.clone(),
                collector_admin: args.collector_admin.clone(),
                collector_identity: args.collector_identity.clone(),
                endpoints: Vec::new(),
                workload_identity: None,
            };
            let sidecar = render_envoy::collector_sidecar(&opts, &args.collector, &senders)?;
            Rendered {
                file: "collector-sidecar.yaml".into(),
                text: header(&names, "envoy") + &yaml_out::to_yaml(&sidecar),
            }
        }
    };
    render_istio::write(std::slice::from_ref(&file), &args.out)?;
    println!("{}", args.out.join(&file.file).display());
    Ok(ExitCode::SUCCESS)
}

fn report(file: &std::path::Path, errors: hipaa_core::policy::PolicyErrors) {
    eprintln!(
        "{}: {} error(s); fix them (`hipaa-mesh policy check`) before rendering",
        file.display(),
        errors.len()
    );
    for e in errors.iter() {
        eprintln!("  {e}");
    }
}

fn header(names: &[String], target: &str) -> String {
    format!(
        "# The audit collector's ingest allow-list: records only from the audit filters of {}.\n# Rendered by `hipaa-mesh policy render-collector --target {target}`; edit the policies, not this file.\n",
        names.join(", ")
    )
}

/// PeerAuthentication STRICT and the AuthorizationPolicy for the collector pods.
fn istio(args: &RenderCollectorArgs, senders: &Senders) -> Result<Vec<Value>, String> {
    let namespace = args
        .collector_identity
        .split("/ns/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .filter(|ns| !ns.is_empty())
        .ok_or_else(|| {
            format!(
                "--collector-identity `{}` names no namespace (spiffe://TD/ns/NAMESPACE/sa/ACCOUNT)",
                args.collector_identity
            )
        })?;
    let labels: serde_json::Map<String, Value> = if args.labels.is_empty() {
        [("app".to_string(), json!("audit-collector"))]
            .into_iter()
            .collect()
    } else {
        args.labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect()
    };
    let metadata = |name: &str| {
        json!({"name": name, "namespace": namespace,
               "labels": {"app.kubernetes.io/managed-by": "hipaa-mesh"}})
    };
    let rules: Vec<Value> = senders
        .iter()
        .map(|(path, ids)| {
            let principals: Vec<&str> = ids
                .iter()
                .map(|id| id.strip_prefix("spiffe://").unwrap_or(id))
                .collect();
            json!({
                "from": [{"source": {"principals": principals}}],
                "to": [{"operation": {"methods": ["POST"], "paths": [path]}}]
            })
        })
        .collect();
    Ok(vec![
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": metadata("audit-collector-mtls"),
            "spec": {"selector": {"matchLabels": labels}, "mtls": {"mode": "STRICT"}},
        }),
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": metadata("audit-collector-ingest"),
            "spec": {"selector": {"matchLabels": labels}, "action": "ALLOW", "rules": rules},
        }),
    ])
}
