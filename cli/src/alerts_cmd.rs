//! `hipaa-mesh alerts list | show | ack`: what the collector's detectors raised, over its
//! operator API (`--collector URL`, the operator's token from `--token-file` or
//! `$HIPAA_AUDIT_TOKEN`). Every call is checked against the reader credential and recorded in
//! the trail (trail-access).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::collector_client::CollectorClient;

#[derive(Args)]
pub struct Connection {
    /// The collector's operator API: http(s)://HOST:PORT.
    #[arg(long)]
    collector: String,
    /// The operator's bearer token (default: $HIPAA_AUDIT_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// List alerts matching every filter given, oldest first.
    List(ListArgs),
    /// One alert, in full (JSON).
    Show {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Acknowledge an alert (or close it with --close), with a note; recorded with your identity.
    Ack {
        id: String,
        /// Close the alert instead of acknowledging it.
        #[arg(long)]
        close: bool,
        /// Why (at most 1024 bytes are kept).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Connection,
    /// failed_auth_burst, patient_volume, break_glass, sensitive_record, after_hours,
    /// exfiltration or integrity.
    #[arg(long)]
    kind: Option<String>,
    /// User (token subject, exact).
    #[arg(long)]
    subject: Option<String>,
    /// Patient id (exact).
    #[arg(long)]
    patient: Option<String>,
    /// open, acknowledged or closed.
    #[arg(long)]
    status: Option<String>,
    /// Raised at or after: YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    from: Option<String>,
    /// Raised before: YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    to: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(cmd: AlertsCommand) -> Result<ExitCode, String> {
    match cmd {
        AlertsCommand::List(a) => list(a),
        AlertsCommand::Show { id, conn } => {
            let client = CollectorClient::from_args(&conn.collector, conn.token_file.as_deref())?;
            let alert = client.get_json(&format!("/v1/alerts/{}", path_segment(&id)?), &[])?;
            println!("{}", pretty(&alert)?);
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Ack {
            id,
            close,
            note,
            conn,
        } => {
            let client = CollectorClient::from_args(&conn.collector, conn.token_file.as_deref())?;
            let status = if close { "closed" } else { "acknowledged" };
            let alert = client.post_json(
                &format!("/v1/alerts/{}/status", path_segment(&id)?),
                &json!({"status": status, "note": note}),
            )?;
            println!("{}", pretty(&alert)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An alert id is 32 lowercase hex characters; anything else never reaches the URL.
fn path_segment(id: &str) -> Result<&str, String> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(id)
    } else {
        Err(format!(
            "{id:?} is not an alert id (32 lowercase hex characters)"
        ))
    }
}

fn pretty(v: &Value) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| e.to_string())
}

fn list(a: ListArgs) -> Result<ExitCode, String> {
    let client = CollectorClient::from_args(&a.conn.collector, a.conn.token_file.as_deref())?;
    let filters = [
        ("kind", &a.kind),
        ("subject", &a.subject),
        ("patient", &a.patient),
        ("status", &a.status),
        ("from", &a.from),
        ("to", &a.to),
    ];
    let query: Vec<(&str, &str)> = filters
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    let alerts = client.get_json("/v1/alerts", &query)?;
    let Value::Array(alerts) = alerts else {
        return Err("the collector's answer to /v1/alerts is not a list".into());
    };
    match a.format {
        Format::Json => println!("{}", pretty(&Value::Array(alerts.clone()))?),
        Format::Table => {
            println!(
                "{:<32}  {:<17}  {:<8}  {:<12}  {:<24}  {:<24}  SUMMARY",
                "ID", "KIND", "SEVERITY", "STATUS", "SUBJECT", "WINDOW FROM"
            );
            let f =
                |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            for al in &alerts {
                println!(
                    "{:<32}  {:<17}  {:<8}  {:<12}  {:<24}  {:<24}  {}",
                    f(al, "id"),
                    f(al, "kind"),
                    f(al, "severity"),
                    f(al, "status"),
                    f(al, "subject"),
                    al.pointer("/window/from")
                        .and_then(Value::as_str)
                        .unwrap_or("-"),
                    f(al, "summary"),
                );
            }
        }
    }
    eprintln!("{} alert(s)", alerts.len());
    Ok(ExitCode::SUCCESS)
}
