//! `hipaa-mesh incident open | note | assess | close | list | show | report`: a compliance
//! officer works an incident through the collector's operator API (`/v1/incidents`), with the
//! read credential (`--token-file` or `$HIPAA_AUDIT_TOKEN`). Every call is checked and recorded
//! by the collector; nothing here touches the database.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::collector_client::CollectorClient;

#[derive(Args)]
pub struct IncidentArgs {
    /// The collector's operator API, e.g. http://127.0.0.1:9100.
    #[arg(long, global = true)]
    collector: Option<String>,
    /// A file holding the operator's bearer token (else $HIPAA_AUDIT_TOKEN).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: IncidentCommand,
}

#[derive(Subcommand)]
enum IncidentCommand {
    /// Open an incident from an alert and/or linked records, or by hand.
    Open(OpenArgs),
    /// Add a note to the incident's history.
    Note { id: String, text: String },
    /// Record the four-factor risk assessment of 45 CFR 164.402(2).
    Assess(AssessArgs),
    /// Close with the breach determination (a later close amends it, e.g. notices sent).
    Close(CloseArgs),
    /// List incidents.
    List {
        #[arg(long, value_enum)]
        status: Option<Status>,
    },
    /// The incident, its affected individuals, deadlines and history.
    Show {
        id: String,
        /// `json` prints the collector's answer as is.
        #[arg(long, value_enum, default_value = "text")]
        format: ShowFormat,
    },
    /// The breach report (HHS breach-portal fields, risk assessment, deadlines, timeline).
    Report {
        id: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct OpenArgs {
    /// An alert id: its records (and, when it names more than it lists, its subject's window).
    #[arg(long)]
    alert: Option<String>,
    /// A linked request id (repeatable).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Link every access record of this subject in [--from, --to).
    #[arg(long, requires_all = ["from", "to"])]
    subject: Option<String>,
    #[arg(long, requires = "subject")]
    from: Option<String>,
    #[arg(long, requires = "subject")]
    to: Option<String>,
    /// What happened.
    #[arg(long)]
    summary: String,
    /// When the breach was discovered (YYYY-MM-DD or RFC 3339; default now): deadlines count
    /// from this date.
    #[arg(long)]
    discovered: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Rating {
    Low,
    Medium,
    High,
}

impl Rating {
    fn as_str(self) -> &'static str {
        match self {
            Rating::Low => "low",
            Rating::Medium => "medium",
            Rating::High => "high",
        }
    }
}

#[derive(Args)]
struct AssessArgs {
    id: String,
    /// (i) The nature and extent of the PHI involved.
    #[arg(long)]
    nature: String,
    #[arg(long, value_enum)]
    nature_rating: Rating,
    /// (ii) The unauthorized person who used the PHI or to whom it was disclosed.
    #[arg(long)]
    person: String,
    #[arg(long, value_enum)]
    person_rating: Rating,
    /// (iii) Whether the PHI was actually acquired or viewed.
    #[arg(long)]
    acquired: String,
    #[arg(long, value_enum)]
    acquired_rating: Rating,
    /// (iv) The extent to which the risk has been mitigated.
    #[arg(long)]
    mitigation: String,
    #[arg(long, value_enum)]
    mitigation_rating: Rating,
    /// HHS portal: type of breach (e.g. "Unauthorized Access/Disclosure").
    #[arg(long = "type")]
    breach_type: Option<String>,
    /// HHS portal: location of breached information (e.g. "Electronic Medical Record").
    #[arg(long)]
    location: Option<String>,
    /// HHS portal: safeguards in place prior to the breach.
    #[arg(long)]
    safeguards: Option<String>,
    /// HHS portal: actions taken in response.
    #[arg(long)]
    actions: Option<String>,
    /// Affected residents of a State: XX=N (repeatable; the records do not carry residence).
    #[arg(long = "state")]
    states: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutcomeArg {
    Breach,
    NotBreach,
}

#[derive(Args)]
struct CloseArgs {
    id: String,
    #[arg(long, value_enum)]
    outcome: OutcomeArg,
    /// Why (the risk assessment's conclusion).
    #[arg(long)]
    reason: String,
    /// Notices sent: individuals=DATE,hhs=DATE,media=DATE (any of them).
    #[arg(long)]
    notified: Option<String>,
    /// Affected residents of a State: XX=N (repeatable).
    #[arg(long = "state")]
    states: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Status {
    Open,
    Assessed,
    Closed,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ShowFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ReportFormat {
    Md,
    Html,
}

pub fn run(args: IncidentArgs) -> Result<ExitCode, String> {
    let url = args
        .collector
        .as_deref()
        .ok_or("incident commands talk to the collector: pass --collector URL")?;
    let client = CollectorClient::from_args(url, args.token_file.as_deref())?;
    match args.command {
        IncidentCommand::Open(a) => {
            let mut body = json!({"summary": a.summary, "records": a.records});
            if let Some(alert) = a.alert {
                body["alert"] = json!(alert);
            }
            if let (Some(subject), Some(from), Some(to)) = (a.subject, a.from, a.to) {
                body["scope"] = json!({"subject": subject, "from": from, "to": to});
            }
            if let Some(d) = a.discovered {
                body["discovered"] = json!(d);
            }
            let i = client.post_json("/v1/incidents", &body)?;
            println!("opened {}", summary_line(&i));
        }
        IncidentCommand::Note { id, text } => {
            let i = post_event(&client, &id, json!({"event": "note", "text": text}))?;
            println!("noted {}", summary_line(&i));
        }
        IncidentCommand::Assess(a) => {
            let factor = |text: String, r: Rating| json!({"text": text, "rating": r.as_str()});
            let mut assessment = json!({
                "nature": factor(a.nature, a.nature_rating),
                "person": factor(a.person, a.person_rating),
                "acquired": factor(a.acquired, a.acquired_rating),
                "mitigation": factor(a.mitigation, a.mitigation_rating),
                "states": parse_states(&a.states)?,
            });
            for (k, v) in [
                ("breachType", a.breach_type),
                ("location", a.location),
                ("safeguards", a.safeguards),
                ("actions", a.actions),
            ] {
                if let Some(v) = v {
                    assessment[k] = json!(v);
                }
            }
            let i = post_event(
                &client,
                &a.id,
                json!({"event": "assessment", "assessment": assessment}),
            )?;
            println!("assessed {} (overall {})", summary_line(&i), s(&i, "/risk"));
        }
        IncidentCommand::Close(a) => {
            let outcome = match a.outcome {
                OutcomeArg::Breach => "breach",
                OutcomeArg::NotBreach => "not-breach",
            };
            let body = json!({
                "event": "closed",
                "outcome": outcome,
                "reason": a.reason,
                "notified": parse_notified(a.notified.as_deref())?,
                "states": parse_states(&a.states)?,
            });
            let i = post_event(&client, &a.id, body)?;
            println!("closed {}", summary_line(&i));
        }
        IncidentCommand::List { status } => {
            let status = status.map(|s| match s {
                Status::Open => "open",
                Status::Assessed => "assessed",
                Status::Closed => "closed",
            });
            let query: Vec<(&str, &str)> = status.map(|s| ("status", s)).into_iter().collect();
            let list = client.get_json("/v1/incidents", &query)?;
            let items = list.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no incidents");
            }
            for i in items {
                println!(
                    "{}  {:<8}  {:>5} affected  discovered {}  individuals due {} ({} days)  {}",
                    s(&i, "/id"),
                    s(&i, "/status"),
                    s(&i, "/individualsAffected"),
                    s(&i, "/discoveredAt").get(..10).unwrap_or_default(),
                    s(&i, "/individualsDue"),
                    s(&i, "/individualsDaysLeft"),
                    one_line(&s(&i, "/summary"))
                );
            }
        }
        IncidentCommand::Show { id, format } => {
            let i = client.get_json(&incident_path(&id)?, &[])?;
            if format == ShowFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&i).map_err(|e| e.to_string())?
                );
            } else {
                print_incident(&i);
            }
        }
        IncidentCommand::Report { id, format, out } => {
            let format = if format == ReportFormat::Html {
                "html"
            } else {
                "md"
            };
            let r = client.get_json(
                &format!("{}/report", incident_path(&id)?),
                &[("format", format)],
            )?;
            let text = r
                .get("report")
                .and_then(Value::as_str)
                .ok_or("the collector's answer has no report")?;
            match out {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?,
                None => print!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `/v1/incidents/ID`, the id checked locally first (it goes into a URL path).
fn incident_path(id: &str) -> Result<String, String> {
    if !hipaa_collector::incidents::model::valid_id(id) {
        return Err(format!(
            "{id:?} is not an incident id (INC-YYYYMMDD-xxxxxxxx)"
        ));
    }
    Ok(format!("/v1/incidents/{id}"))
}

fn post_event(client: &CollectorClient, id: &str, body: Value) -> Result<Value, String> {
    client.post_json(&format!("{}/events", incident_path(id)?), &body)
}

/// `XX=N` pairs.
fn parse_states(pairs: &[String]) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (state, n) = p
            .split_once('=')
            .ok_or_else(|| format!("--state {p:?}: use XX=N, e.g. CA=612"))?;
        let n: u64 = n
            .parse()
            .map_err(|_| format!("--state {p:?}: the count must be a whole number"))?;
        out.insert(state.to_string(), n);
    }
    Ok(out)
}

/// `individuals=DATE,hhs=DATE,media=DATE`.
fn parse_notified(s: Option<&str>) -> Result<Value, String> {
    let mut out = json!({});
    for part in s.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        let (who, date) = part.split_once('=').ok_or_else(|| {
            format!("--notified {part:?}: use individuals=DATE,hhs=DATE,media=DATE")
        })?;
        match who {
            "individuals" | "hhs" | "media" => out[who] = json!(date),
            other => {
                return Err(format!(
                    "--notified: {other:?} is not individuals, hhs or media"
                ))
            }
        }
    }
    Ok(out)
}

fn s(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

/// Operator text on one terminal line: control characters (escape sequences) shown as spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn summary_line(i: &Value) -> String {
    format!(
        "{} [{}]: {} individual(s) affected; individuals' notice due {} ({} days left)",
        s(i, "/id"),
        s(i, "/status"),
        s(i, "/affected/count"),
        s(i, "/deadlines/individuals/due"),
        s(i, "/deadlines/individuals/daysLeft"),
    )
}

fn print_incident(i: &Value) {
    let t = |p: &str| one_line(&s(i, p));
    println!("{}  {}", t("/id"), t("/summary"));
    println!("status        {}", t("/status"));
    println!("opened        {} by {}", t("/openedAt"), t("/openedBy"));
    println!("discovered    {}", t("/discoveredAt"));
    if i.get("alert").is_some_and(|a| !a.is_null()) {
        println!("alert         {}", t("/alert"));
    }
    println!(
        "affected      {} individual(s) in {} access record(s), {} .. {}",
        t("/affected/count"),
        t("/affected/records"),
        t("/affected/firstAccess"),
        t("/affected/lastAccess")
    );
    if let Some(p) = i.pointer("/affected/patients").and_then(Value::as_array) {
        let names: Vec<String> = p.iter().filter_map(Value::as_str).map(one_line).collect();
        if !names.is_empty() {
            println!("patients      {}", names.join(", "));
        }
    }
    if let Some(m) = i
        .pointer("/affected/missingRecords")
        .and_then(Value::as_array)
    {
        if !m.is_empty() {
            println!("not found     {} linked request id(s)", m.len());
        }
    }
    if i.get("assessment").is_some_and(Value::is_object) {
        for (label, k) in [
            ("nature", "nature"),
            ("person", "person"),
            ("acquired", "acquired"),
            ("mitigation", "mitigation"),
        ] {
            println!(
                "{label:<13} {:<6} {}",
                t(&format!("/assessment/{k}/rating")),
                t(&format!("/assessment/{k}/text"))
            );
        }
        println!("overall risk  {}", t("/risk"));
    }
    if i.get("outcome").is_some_and(Value::is_object) {
        println!(
            "outcome       {}: {}",
            t("/outcome/outcome"),
            t("/outcome/reason")
        );
    }
    println!("deadlines     ({})", t("/deadlinesApply"));
    for who in ["individuals", "hhs", "media"] {
        println!(
            "  {who:<11} {:<12} due {} ({} days left) sent {}",
            t(&format!("/deadlines/{who}/requirement")),
            t(&format!("/deadlines/{who}/due")),
            t(&format!("/deadlines/{who}/daysLeft")),
            t(&format!("/deadlines/{who}/sent"))
        );
    }
    println!("history");
    for h in i
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        println!(
            "  {} {:<10} {}",
            s(&h, "/time"),
            s(&h, "/event"),
            one_line(&s(&h, "/by"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notified_and_states_parse_or_explain() {
        assert_eq!(
            parse_notified(Some("individuals=2026-12-01,hhs=2027-02-01")).unwrap(),
            json!({"individuals": "2026-12-01", "hhs": "2027-02-01"})
        );
        assert!(parse_notified(Some("press=2026-12-01")).is_err());
        assert!(parse_notified(Some("individuals")).is_err());
        assert_eq!(
            parse_states(&["CA=612".into(), "NV=3".into()]).unwrap(),
            BTreeMap::from([("CA".to_string(), 612), ("NV".to_string(), 3)])
        );
        assert!(parse_states(&["CA=many".into()]).is_err());
        assert!(incident_path("../v1/records").is_err());
        assert_eq!(one_line("a\u{1b}[2Jb\nc"), "a [2Jb c");
    }
}
