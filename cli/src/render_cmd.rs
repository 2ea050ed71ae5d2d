//! `hipaa-mesh policy render FILE --target istio|envoy --out DIR`: a checked policy, rendered.
//! Only a policy that passes `policy check` (validation and safety rules) is rendered.

use crate::render_envoy::{self, EnvoyOptions};
use crate::render_istio::{self, IstioOptions};
use clap::{Args, ValueEnum};
use hipaa_core::policy::safety::safety_errors;
use hipaa_core::policy::PolicyDocument;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum Target {
    /// WasmPlugins, PeerAuthentication, DestinationRules, Sidecar, ServiceEntries.
    Istio,
    /// Envoy bootstraps: the workload's sidecar and the audit collector's sidecar.
    Envoy,
}

#[derive(Args)]
pub struct RenderArgs {
    /// The HipaaPolicy file.
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub target: Target,
    /// Directory for the rendered files (created if needed; existing files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Where the built modules are: their digests are pinned in the WasmPlugins.
    #[arg(long, default_value = "target/wasm")]
    pub wasm_dir: PathBuf,
    /// The OCI registry (and path) the images are pushed to: `oci://REGISTRY/hipaa-authn:TAG`.
    #[arg(long, default_value = "ghcr.io/hipaa-mesh")]
    pub registry: String,
    /// The image tag.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    #[command(flatten)]
    pub envoy: EnvoyArgs,
}

/// Addresses and files for `--target envoy` (paths are written as given: relative paths are
/// relative to the directory Envoy runs in).
#[derive(Args)]
pub struct EnvoyArgs {
    /// Certificates: ca.pem, workload.pem + workload-key.pem, collector.pem + collector-key.pem.
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// The CA bundle that BAA vendors' and IdPs' certificates are checked against.
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    pub public_ca: PathBuf,
    /// The inbound (TLS / mTLS) listener.
    #[arg(long, default_value = "0.0.0.0:15006")]
    pub inbound: String,
    /// The outbound listener the app sends vendor calls to (rendered when there are vendors).
    #[arg(long, default_value = "127.0.0.1:15001")]
    pub outbound: String,
    /// Envoy's admin interface.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: String,
    /// The app behind the sidecar.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub app: String,
    /// The collector's sidecar (mTLS); default: from the policy's Istio cluster name.
    #[arg(long)]
    pub collector: Option<String>,
    /// The collector process, behind its sidecar.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub collector_backend: String,
    /// The collector sidecar's admin interface.
    #[arg(long, default_value = "127.0.0.1:15100")]
    pub collector_admin: String,
    /// The collector's SPIFFE id, pinned by the workload's mTLS client.
    #[arg(
        long,
        default_value = "spiffe://cluster.local/ns/hipaa-system/sa/audit-collector"
    )]
    pub collector_identity: String,
    /// The workload's own SPIFFE id, the only identity its collector sidecar takes records
    /// from (default: spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/NAME from the policy's metadata and
    /// the collector identity's trust domain).
    #[arg(long)]
    pub workload_identity: Option<String>,
    /// CLUSTER=HOST:PORT, repeatable: where a JWKS or vendor cluster really is.
    #[arg(long = "endpoint", value_parser = parse_endpoint)]
    pub endpoints: Vec<(String, String)>,
}

pub fn parse_endpoint(s: &str) -> Result<(String, String), String> {
    s.rsplit_once('=')
        .filter(|(c, a)| !c.is_empty() && a.contains(':'))
        .map(|(c, a)| (c.to_string(), a.to_string()))
        .ok_or_else(|| format!("`{s}`: expected CLUSTER=HOST:PORT"))
}

pub fn run(args: RenderArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let mut errors = match PolicyDocument::compile(&text) {
        Ok((doc, _)) => {
            let errors = safety_errors(&doc.spec);
            if errors.is_empty() {
                return render(&doc, &args);
            }
            errors
        }
        Err(errors) => errors,
    };
    errors.0.dedup();
    eprintln!(
        "{}: {} error(s); fix them (`hipaa-mesh policy check`) before rendering",
        args.file.display(),
        errors.len()
    );
    for e in errors.iter() {
        eprintln!("  {e}");
    }
    Ok(ExitCode::from(1))
}

fn render(doc: &PolicyDocument, args: &RenderArgs) -> Result<ExitCode, String> {
    match args.target {
        Target::Envoy => {
            let e = &args.envoy;
            let opts = EnvoyOptions {
                wasm_dir: args.wasm_dir.clone(),
                certs: e.certs.clone(),
                public_ca: e.public_ca.clone(),
                inbound: e.inbound.clone(),
                outbound: e.outbound.clone(),
                admin: e.admin.clone(),
                app: e.app.clone(),
                collector: e.collector.clone(),
                collector_backend: e.collector_backend.clone(),
                collector_admin: e.collector_admin.clone(),
                collector_identity: e.collector_identity.clone(),
                endpoints: e.endpoints.clone(),
                workload_identity: e.workload_identity.clone(),
            };
            for w in render_envoy::warnings(doc, &opts) {
                eprintln!("warning: {w}");
            }
            let files = render_envoy::render(doc, &opts)?;
            render_istio::write(&files, &args.out)?;
            for f in &files {
                println!("{}", args.out.join(&f.file).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Target::Istio => {
            for w in render_istio::warnings(doc) {
                eprintln!("warning: {w}");
            }
            let opts = IstioOptions {
                wasm_dir: args.wasm_dir.clone(),
                registry: args.registry.clone(),
                tag: args.tag.clone(),
            };
            let files = render_istio::render(doc, &opts)?;
            render_istio::write(&files, &args.out)?;
            for f in &files {
                println!("{}", args.out.join(&f.file).display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
