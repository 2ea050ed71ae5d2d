//! `hipaa-mesh session revoke | list-revoked`: end access now (164.308(a)(3)(ii)(C) termination
//! procedures) through the collector's operator API, with the operator's bearer token. Every
//! revocation is an audit record in the ledger; every Envoy with a session authority learns it
//! within `revocationsRefreshMs` (DESIGN.md, sessions across replicas).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::collector_client::CollectorClient;

#[derive(Subcommand)]
pub enum SessionCommand {
    /// Revoke one session (`--session SID`) or every session of a user (`--subject S`): every
    /// Envoy refuses them with 401 `session_revoked` within seconds, until the longest token
    /// lifetime has passed. End the user or session at the identity provider as well.
    Revoke(RevokeArgs),
    /// List the revocations in force (the read is recorded in the trail).
    ListRevoked(ConnectArgs),
}

#[derive(Args)]
pub struct ConnectArgs {
    /// The collector's operator API, e.g. http://audit-collector:9100.
    #[arg(long)]
    collector: String,
    /// The operator's bearer token (default: $HIPAA_AUDIT_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Every session of this user (the token's subject).
    #[arg(long, conflicts_with = "session", required_unless_present = "session")]
    subject: Option<String>,
    /// This session id (the token's `sid`).
    #[arg(long)]
    session: Option<String>,
    /// Only tokens of this issuer (default: any issuer).
    #[arg(long)]
    issuer: Option<String>,
    /// Why (kept in the revocation's audit record; at most 512 bytes).
    #[arg(long)]
    reason: Option<String>,
    /// How long the revocation stays in force (default: the collector's, the longest token
    /// lifetime plus skew).
    #[arg(long)]
    ttl_seconds: Option<u64>,
}

pub fn run(cmd: SessionCommand) -> Result<ExitCode, String> {
    match cmd {
        SessionCommand::Revoke(a) => {
            let client =
                CollectorClient::from_args(&a.connect.collector, a.connect.token_file.as_deref())?;
            let mut body = json!({
                "subject": a.subject,
                "session": a.session,
                "issuer": a.issuer,
                "reason": a.reason,
            });
            if let (Some(ttl), Some(map)) = (a.ttl_seconds, body.as_object_mut()) {
                map.insert("ttlSeconds".into(), json!(ttl));
            }
            let answer = client.post_json("/v1/sessions/revoke", &body)?;
            print_json(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
        SessionCommand::ListRevoked(c) => {
            let client = CollectorClient::from_args(&c.collector, c.token_file.as_deref())?;
            let answer = client.get_json("/v1/sessions/revoked", &[])?;
            print_json(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_json(v: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}
