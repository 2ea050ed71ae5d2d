//! `hipaa-mesh policy render FILE --target istio --out DIR`: a checked policy, rendered.
//! Only a policy that passes `policy check` (validation and safety rules) is rendered.

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
    /// A complete Envoy bootstrap (not implemented yet).
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
        Target::Envoy => Err("--target envoy is not implemented yet; use --target istio".into()),
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
