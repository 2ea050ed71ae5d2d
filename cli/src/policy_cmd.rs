//! `hipaa-mesh policy ...`: the same core validation the filters run.

use clap::Subcommand;
use hipaa_core::policy::safety::{safety_errors, safety_warnings};
use hipaa_core::policy::PolicyDocument;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; exit non-zero listing every error with its key path.
    Check { file: PathBuf },
    /// Print the policy's `spec` as the JSON plugin configuration the filters receive.
    PluginConfig { file: PathBuf },
    /// Render a checked policy into deployable configuration (`--target istio|envoy`).
    Render(Box<crate::render_cmd::RenderArgs>),
    /// Render the audit collector's ingest allow-list from the policies of every workload that
    /// sends it records (`--target istio`: AuthorizationPolicy; `envoy`: its sidecar with RBAC).
    RenderCollector(Box<crate::render_collector::RenderCollectorArgs>),
    /// Which 164.312 safeguard each setting implements, the exceptions, and the gaps.
    Report(crate::report::ReportArgs),
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode, String> {
    match cmd {
        PolicyCommand::Check { file } => check(&file),
        PolicyCommand::PluginConfig { file } => plugin_config(&file),
        PolicyCommand::Render(args) => crate::render_cmd::run(*args),
        PolicyCommand::RenderCollector(args) => crate::render_collector::run(*args),
        PolicyCommand::Report(args) => crate::report::run(args),
    }
}

fn read(file: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

fn check(file: &PathBuf) -> Result<ExitCode, String> {
    let text = read(file)?;
    match PolicyDocument::compile(&text) {
        Ok((doc, policy)) => {
            // The safety rules run on a valid document (they need its parsed form).
            let unsafe_ = safety_errors(&doc.spec);
            if !unsafe_.is_empty() {
                eprintln!("{}: {} error(s)", file.display(), unsafe_.len());
                for e in unsafe_.iter() {
                    eprintln!("  {e}");
                }
                return Ok(ExitCode::from(1));
            }
            for w in safety_warnings(&doc.spec).iter() {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: valid ({} routes, {} identity providers)",
                doc.metadata.name,
                policy.routes.routes().len(),
                doc.spec.identity.providers.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", file.display(), errors.len());
            for e in errors.iter() {
                eprintln!("  {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn plugin_config(file: &PathBuf) -> Result<ExitCode, String> {
    let text = read(file)?;
    let (doc, _) = PolicyDocument::compile(&text).map_err(|e| e.to_string())?;
    let json = serde_json::to_string(&doc.spec).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
