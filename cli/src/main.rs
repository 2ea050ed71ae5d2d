//! `hipaa-mesh`: the one binary for platform engineers and compliance officers.
//! Each command family lives in its own module; this file only parses and dispatches.

mod alerts_cmd;
mod audit_cmd;
mod collector_client;
mod collector_cmd;
mod dev;
mod incident_cmd;
mod integrity_cmd;
mod oci;
mod package_cmd;
mod policy_cmd;
mod render_cmd;
mod render_collector;
mod render_envoy;
mod render_istio;
mod report;
mod session_cmd;
mod yaml_out;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hipaa-mesh",
    version,
    about = "HIPAA Security Rule safeguards for Envoy / Istio meshes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check, render and report on a HipaaPolicy document.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Local development tools: a demo identity provider and a sample upstream. Not for production.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Sign a request body (HMAC-SHA256), verify a request or response signature (Ed25519 with
    /// the public key), make a response-signing key.
    #[command(subcommand)]
    Integrity(integrity_cmd::IntegrityCommand),
    /// Run the audit collector: receives, checks, encrypts and stores audit records.
    Collector(collector_cmd::CollectorArgs),
    /// Review the audit trail: query, verify, purge.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// End access now: revoke a session or a user mesh-wide, list the revocations in force.
    #[command(subcommand)]
    Session(session_cmd::SessionCommand),
    /// Work an incident: open (from an alert or by hand), note, assess, close, list, show,
    /// report. Talks to the collector's operator API with the read credential.
    Incident(incident_cmd::IncidentArgs),
    /// What the collector's detectors raised: list, show, acknowledge or close.
    #[command(subcommand)]
    Alerts(alerts_cmd::AlertsCommand),
    /// Write each built `.wasm` as an OCI image layout that Istio's WasmPlugin pulls (`oci://`).
    Package(package_cmd::PackageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Dev(cmd) => dev::run(cmd),
        Command::Integrity(cmd) => integrity_cmd::run(cmd),
        Command::Collector(args) => collector_cmd::run(args),
        Command::Audit(cmd) => audit_cmd::run(cmd),
        Command::Session(cmd) => session_cmd::run(cmd),
        Command::Alerts(cmd) => alerts_cmd::run(cmd),
        Command::Package(args) => package_cmd::run(args),
        Command::Incident(args) => incident_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hipaa-mesh: {message}");
            ExitCode::from(2)
        }
    }
}
