//! `hipaa-mesh audit query | verify | purge`: the compliance officer's review of the audit trail.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::collector_client::CollectorClient;
use clap::{Args, Subcommand, ValueEnum};
use hipaa_collector::alerts::ledger::{self as alert_ledger, AlertFilter};
use hipaa_collector::alerts::Alert;
use hipaa_collector::keys::{
    default_public_key_path, load_public_keys, mac_ring_from_env, public_key_fingerprint,
    public_key_id, CheckpointSigner, EncryptionKey, ENV_ENCRYPTION_KEY_FILE, ENV_PUBLIC_KEY_FILE,
    ENV_SIGNING_KEY_FILE,
};
use hipaa_collector::ocsf;
use hipaa_collector::purge::purge;
use hipaa_collector::query::{parse_kind, parse_time, Query, MAX_LIMIT};
use hipaa_collector::{open_store, query, system_clock, verify, VerifyKeys, VerifyReport};
use serde_json::Value;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit records (decrypted) matching every filter given, in the order stored.
    Query(QueryArgs),
    /// Recompute every MAC, chain, ledger link and checkpoint signature; exit 0 when intact,
    /// 1 naming each modified, deleted, reordered or truncated record.
    Verify(VerifyArgs),
    /// Remove records stored before DATE (at least 6 years ago), as signed checkpoints prove.
    Purge(PurgeArgs),
    /// Export accesses, sign-in failures and alerts for a SIEM, one JSON object per line (OCSF:
    /// API Activity 6003, Authentication 3002, Detection Finding 2004). Carries patient ids.
    Export(ExportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Ocsf,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The audit database: sqlite:PATH or postgres://... (reads it directly, with the at-rest key).
    #[arg(
        long,
        required_unless_present = "collector",
        conflicts_with = "collector"
    )]
    db: Option<String>,
    /// The collector's operator API instead (the reads are checked and recorded).
    #[arg(long)]
    collector: Option<String>,
    /// The operator's bearer token (default: $HIPAA_AUDIT_TOKEN); only with --collector.
    #[arg(long, requires = "collector")]
    token_file: Option<PathBuf>,
    /// From this time on: YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    from: Option<String>,
    /// Before this time: YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    to: Option<String>,
    #[arg(long, value_enum, default_value = "ocsf")]
    format: ExportFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub struct QueryArgs {
    /// The audit database: sqlite:PATH or postgres://... (reads it directly, with the at-rest key).
    #[arg(
        long,
        required_unless_present = "collector",
        conflicts_with = "collector"
    )]
    db: Option<String>,
    /// The collector's operator API instead of the database: http(s)://HOST:PORT. The read is
    /// checked against the reader credential and recorded in the trail (trail-access).
    #[arg(long)]
    collector: Option<String>,
    /// The operator's bearer token (default: $HIPAA_AUDIT_TOKEN); only with --collector.
    #[arg(long, requires = "collector")]
    token_file: Option<PathBuf>,
    /// Patient id (exact).
    #[arg(long)]
    patient: Option<String>,
    /// User (token subject, exact).
    #[arg(long)]
    subject: Option<String>,
    /// Inference model name (exact).
    #[arg(long)]
    model: Option<String>,
    /// Inference model version (exact).
    #[arg(long)]
    version: Option<String>,
    /// From this time on: YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    from: Option<String>,
    /// Before this time: YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    to: Option<String>,
    /// Break-glass (emergency access) records only.
    #[arg(long)]
    emergency: bool,
    /// access, chain-start, integrity or all.
    #[arg(long, default_value = "access")]
    kind: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The audit database: sqlite:PATH or postgres://...
    #[arg(
        long,
        required_unless_present = "collector",
        conflicts_with = "collector"
    )]
    db: Option<String>,
    /// Have the collector verify (`GET /v1/verify`, its read port): http(s)://HOST:PORT. The
    /// read is checked against the reader credential and recorded (trail-access). The collector
    /// checks with its own keys; an independent check is `--db` with `--public-key`.
    #[arg(long, conflicts_with_all = ["public_keys", "now"])]
    collector: Option<String>,
    /// The operator's bearer token (default: $HIPAA_AUDIT_TOKEN); only with --collector.
    #[arg(long, requires = "collector")]
    token_file: Option<PathBuf>,
    /// Checkpoint public key file(s), PEM (default: $HIPAA_AUDIT_CHECKPOINT_PUBLIC_KEY_FILE, else
    /// PATH.checkpoint-keys.pem next to a SQLite database).
    #[arg(long = "public-key")]
    public_keys: Vec<PathBuf>,
    /// Also fail on integrity events the collector flagged at ingest (bad MACs, gaps on the way in).
    #[arg(long)]
    strict: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Judge retention purges as of this time (YYYY-MM-DD or RFC 3339) instead of the system
    /// clock: for tests only. The 6-year rule is never judged by a purge mark's own dates.
    #[arg(long, hide = true)]
    now: Option<String>,
}

#[derive(Args)]
pub struct PurgeArgs {
    /// The audit database: sqlite:PATH or postgres://...
    #[arg(long)]
    db: String,
    /// Remove records stored before this date (YYYY-MM-DD or RFC 3339); at least 6 years ago.
    #[arg(long)]
    before: String,
    /// The checkpoint signing key (Ed25519 PKCS#8 PEM) that signs the purge mark (default:
    /// $HIPAA_AUDIT_SIGNING_KEY_FILE). `audit verify` reports an unsigned mark.
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

pub fn run(cmd: AuditCommand) -> Result<ExitCode, String> {
    match cmd {
        AuditCommand::Query(a) => run_query(a),
        AuditCommand::Verify(a) => run_verify(a),
        AuditCommand::Purge(a) => run_purge(a),
        AuditCommand::Export(a) => run_export(a),
    }
}

fn run_export(a: ExportArgs) -> Result<ExitCode, String> {
    let ExportFormat::Ocsf = a.format;
    let q = QueryArgs {
        db: a.db.clone(),
        collector: a.collector.clone(),
        token_file: a.token_file.clone(),
        patient: None,
        subject: None,
        model: None,
        version: None,
        from: a.from.clone(),
        to: a.to.clone(),
        emergency: false,
        kind: "access".into(),
        format: Format::Json,
    };
    let (records, alerts) = match (&a.collector, &a.db) {
        (Some(url), _) => {
            let client = CollectorClient::from_args(url, a.token_file.as_deref())?;
            let range: Vec<(&str, &str)> = [("from", &a.from), ("to", &a.to)]
                .iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
                .collect();
            let alerts = client.get_json("/v1/alerts", &range)?;
            let alerts: Vec<Alert> = serde_json::from_value(alerts)
                .map_err(|e| format!("the collector's alerts do not parse: {e}"))?;
            (query_collector(url, &q)?, alerts)
        }
        (None, Some(db)) => {
            let enc = encryption_key()?;
            let mut store = open_store(db).map_err(|e| e.to_string())?;
            let filter = AlertFilter {
                from_ms: a.from.as_deref().map(parse_time).transpose()?,
                to_ms: a.to.as_deref().map(parse_time).transpose()?,
                ..AlertFilter::default()
            };
            let alerts =
                alert_ledger::list(store.as_mut(), &enc, &filter).map_err(|e| e.to_string())?;
            (query_database(db, &q)?, alerts)
        }
        (None, None) => return Err("audit export needs --db or --collector".to_string()),
    };
    let mut lines = 0;
    for event in records
        .iter()
        .filter_map(ocsf::access_event)
        .chain(alerts.iter().map(ocsf::alert_event))
    {
        println!("{event}");
        lines += 1;
    }
    eprintln!("{lines} OCSF event(s)");
    Ok(ExitCode::SUCCESS)
}

fn encryption_key() -> Result<EncryptionKey, String> {
    EncryptionKey::from_env().map_err(|e| {
        format!("{e}: reading the audit trail needs the at-rest key ({ENV_ENCRYPTION_KEY_FILE})")
    })
}

fn run_query(a: QueryArgs) -> Result<ExitCode, String> {
    let records = match (&a.collector, &a.db) {
        (Some(url), _) => query_collector(url, &a)?,
        (None, Some(db)) => query_database(db, &a)?,
        (None, None) => return Err("audit query needs --db or --collector".to_string()),
    };
    match a.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
            println!("{text}");
        }
        Format::Csv => {
            println!("{}", COLUMNS.join(","));
            for r in &records {
                let line: Vec<String> = columns(r).iter().map(|c| csv_field(c)).collect();
                println!("{}", line.join(","));
            }
        }
        Format::Table => print_table(&records),
    }
    eprintln!("{} record(s)", records.len());
    Ok(ExitCode::SUCCESS)
}

/// The same filters through `GET /v1/records`, page by page (the collector's cursor header).
fn query_collector(url: &str, a: &QueryArgs) -> Result<Vec<Value>, String> {
    let client = CollectorClient::from_args(url, a.token_file.as_deref())?;
    let mut params: Vec<(&str, String)> = Vec::new();
    let optional = [
        ("patient", &a.patient),
        ("subject", &a.subject),
        ("model", &a.model),
        ("version", &a.version),
        ("from", &a.from),
        ("to", &a.to),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            params.push((name, v.clone()));
        }
    }
    if a.emergency {
        params.push(("emergency", "true".to_string()));
    }
    params.push(("kind", a.kind.clone()));
    params.push(("limit", MAX_LIMIT.to_string()));
    let mut after: Option<String> = None;
    let mut records = Vec::new();
    loop {
        let mut page_params: Vec<(&str, &str)> =
            params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(cursor) = &after {
            page_params.push(("after", cursor.as_str()));
        }
        let (page, next) =
            client.get_json_with_header("/v1/records", &page_params, "x-hipaa-next-after")?;
        let Value::Array(page) = page else {
            return Err("the collector's answer to /v1/records is not a list".to_string());
        };
        let full = page.len() as i64 >= MAX_LIMIT;
        records.extend(page);
        match next {
            Some(cursor) if full => after = Some(cursor),
            _ => break,
        }
    }
    Ok(records)
}

fn query_database(db: &str, a: &QueryArgs) -> Result<Vec<Value>, String> {
    let enc = encryption_key()?;
    let mut q = Query {
        patient: a.patient.clone(),
        subject: a.subject.clone(),
        model: a.model.clone(),
        version: a.version.clone(),
        from_ms: a.from.as_deref().map(parse_time).transpose()?,
        to_ms: a.to.as_deref().map(parse_time).transpose()?,
        emergency: a.emergency.then_some(true),
        kind: parse_kind(&a.kind)?,
        after: 0,
        limit: MAX_LIMIT,
    };
    let mut store = open_store(db).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    loop {
        let page = query(store.as_mut(), &enc, &q).map_err(|e| e.to_string())?;
        let full = page.records.len() as i64 >= q.limit;
        records.extend(page.records);
        match page.last_ledger_seq {
            Some(last) if full => q.after = last,
            _ => break,
        }
    }
    Ok(records)
}

const COLUMNS: [&str; 19] = [
    "time",
    "kind",
    "subject",
    "roles",
    "patient",
    "method",
    "path",
    "operation",
    "model",
    "version",
    "response_sha256",
    "response_key",
    "emergency",
    "tls",
    "peer",
    "egress",
    "decision",
    "status",
    "request_id",
];

fn s(v: &Value, path: &str) -> String {
    match v.pointer(path) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) => other.to_string(),
    }
}

fn columns(r: &Value) -> Vec<String> {
    let integrity = r.get("kind").and_then(Value::as_str) == Some("integrity");
    let (decision, status) = if integrity {
        (
            s(r, "/integrity/finding"),
            format!(
                "{} seq {}",
                s(r, "/integrity/chainId"),
                s(r, "/integrity/seq")
            ),
        )
    } else {
        let mut d = s(r, "/outcome/decision");
        let reason = s(r, "/outcome/reason");
        if !reason.is_empty() {
            d = format!("{d} ({reason})");
        }
        (d, s(r, "/outcome/status"))
    };
    vec![
        s(r, "/time"),
        s(r, "/kind"),
        s(r, "/actor/subject"),
        s(r, "/actor/roles"),
        s(r, "/resource/patient"),
        s(r, "/action/method"),
        s(r, "/action/path"),
        s(r, "/action/operation"),
        s(r, "/inference/model"),
        s(r, "/inference/version"),
        s(r, "/inference/responseSha256"),
        s(r, "/inference/responseSignatureKeyId"),
        s(r, "/emergency/reason"),
        s(r, "/source/tls"),
        s(r, "/actor/peer"),
        egress(r),
        decision,
        status,
        s(r, "/requestId"),
    ]
}

/// `HOST (BAA-ID)`, or `HOST (no BAA)`, for records of calls out of the mesh.
fn egress(r: &Value) -> String {
    let host = s(r, "/egress/host");
    if host.is_empty() {
        return host;
    }
    match s(r, "/egress/baaId") {
        id if id.is_empty() => format!("{host} (no BAA)"),
        id => format!("{host} ({id})"),
    }
}

fn csv_field(v: &str) -> String {
    // Quote when needed; a leading = + - @ is prefixed so spreadsheets do not run it as a formula.
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// A cell is cut to this width in the table, but a hash is shown whole (a cut one proves
/// nothing).
fn max_width(column: &str) -> usize {
    if column == "response_sha256" {
        64
    } else {
        48
    }
}

fn print_table(records: &[Value]) {
    let rows: Vec<Vec<String>> = records.iter().map(columns).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(COLUMNS[i].len()))
                .max()
                .unwrap_or(0)
                .min(max_width(COLUMNS[i]))
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_uppercase()).collect();
    println!("{}", line(&header));
    for r in &rows {
        println!("{}", line(r));
    }
}

fn run_verify(a: VerifyArgs) -> Result<ExitCode, String> {
    let db = match (&a.collector, &a.db) {
        (Some(url), _) => return verify_collector(url, &a),
        (None, Some(db)) => db.clone(),
        (None, None) => return Err("audit verify needs --db or --collector".to_string()),
    };
    let mac_keys = mac_ring_from_env().map_err(|e| e.to_string())?;
    let enc = encryption_key()?;
    let (paths, source) = checkpoint_key_paths(
        &a.public_keys,
        std::env::var_os(ENV_PUBLIC_KEY_FILE).map(PathBuf::from),
        &db,
    )?;
    let mut checkpoint_keys = Vec::new();
    for p in &paths {
        let keys = load_public_keys(p).map_err(|e| e.to_string())?;
        for k in &keys {
            eprintln!(
                "checkpoint public key {} (key id {}) from {} ({})",
                public_key_fingerprint(k),
                public_key_id(k),
                p.display(),
                source.describe()
            );
        }
        checkpoint_keys.extend(keys);
    }
    if source == KeySource::BesideDatabase {
        eprintln!("{}", beside_database_warning(&paths));
    }
    let now = match a.now.as_deref() {
        Some(t) => parse_time(t)?,
        None => system_clock()(),
    };
    let mut store = open_store(&db).map_err(|e| e.to_string())?;
    let report = verify(
        store.as_mut(),
        &VerifyKeys {
            mac_keys: &mac_keys,
            encryption: &enc,
            checkpoint_keys: &checkpoint_keys,
        },
        now,
    )
    .map_err(|e| e.to_string())?;
    print_report(&report, &a)
}

/// `GET /v1/verify` on the collector: the same report, printed and judged the same way.
fn verify_collector(url: &str, a: &VerifyArgs) -> Result<ExitCode, String> {
    let client = CollectorClient::from_args(url, a.token_file.as_deref())?;
    let (_, answer) = client.get_json_status("/v1/verify", &[409])?;
    let report: VerifyReport = serde_json::from_value(answer)
        .map_err(|e| format!("the collector's answer to /v1/verify is not a report: {e}"))?;
    for k in &report.checkpoint_keys {
        eprintln!("checkpoint public key {k} (the collector's own; verified by {url})");
    }
    print_report(&report, a)
}

fn print_report(report: &VerifyReport, a: &VerifyArgs) -> Result<ExitCode, String> {
    let failed = !report.intact || (a.strict && !report.ingest_flags.is_empty());
    if a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        for f in &report.findings {
            println!("{f}");
        }
        for flag in &report.ingest_flags {
            println!("   flagged {flag}");
        }
        for note in &report.notes {
            println!("      note {note}");
        }
        println!(
            "{}: {} row(s), {} chain(s), {} checkpoint(s), {} finding(s), {} ingest flag(s)",
            if failed { "NOT INTACT" } else { "intact" },
            report.rows,
            report.chains,
            report.checkpoints,
            report.findings.len(),
            report.ingest_flags.len()
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where `audit verify` took the checkpoint public keys from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    Flag,
    Environment,
    /// The file the collector writes next to a SQLite database: within reach of whoever can
    /// change the database.
    BesideDatabase,
}

impl KeySource {
    fn describe(self) -> &'static str {
        match self {
            KeySource::Flag => "--public-key",
            KeySource::Environment => ENV_PUBLIC_KEY_FILE,
            KeySource::BesideDatabase => "beside the database",
        }
    }
}

/// The key files: `--public-key`, else the environment, else beside a SQLite database.
fn checkpoint_key_paths(
    flags: &[PathBuf],
    env: Option<PathBuf>,
    db: &str,
) -> Result<(Vec<PathBuf>, KeySource), String> {
    if !flags.is_empty() {
        return Ok((flags.to_vec(), KeySource::Flag));
    }
    if let Some(p) = env {
        return Ok((vec![p], KeySource::Environment));
    }
    match default_public_key_path(db) {
        Some(p) => Ok((vec![p], KeySource::BesideDatabase)),
        None => Err(format!(
            "no checkpoint public key: pass --public-key FILE (or set {ENV_PUBLIC_KEY_FILE})"
        )),
    }
}

fn beside_database_warning(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!(
        "WARNING: the checkpoint public key was read from beside the database ({}). Whoever can \
         change the database can usually replace this file too, sign checkpoints of a rewritten \
         trail with their own key, and this verify would answer intact. Keep a copy of the \
         public key apart from the database (compare the fingerprint above with it) and pass \
         --public-key FILE or set {ENV_PUBLIC_KEY_FILE}.",
        shown.join(", ")
    )
}

fn run_purge(a: PurgeArgs) -> Result<ExitCode, String> {
    let before = parse_time(&a.before)?;
    let now = system_clock()();
    let key_path = a
        .signing_key
        .clone()
        .or_else(|| std::env::var_os(ENV_SIGNING_KEY_FILE).map(PathBuf::from))
        .ok_or_else(|| {
            format!(
                "a purge is signed with the checkpoint key: pass --signing-key FILE (or set \
                 {ENV_SIGNING_KEY_FILE})"
            )
        })?;
    let signer = CheckpointSigner::from_pem_file(&key_path).map_err(|e| e.to_string())?;
    let mut store = open_store(&a.db).map_err(|e| e.to_string())?;
    // Incidents are read to keep each one whole until 6 years after its last event.
    let enc = encryption_key()?;
    let out = purge(store.as_mut(), &signer, &enc, before, now).map_err(|e| e.to_string())?;
    if out.deleted == 0 {
        println!(
            "nothing to purge: no signed checkpoint before {} covers records not yet purged",
            a.before
        );
    } else {
        println!(
            "purged {} record(s): ledger rows through #{}",
            out.deleted, out.through_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checkpoint_key_source_is_the_operators_and_beside_the_database_warns() {
        let flag = vec![PathBuf::from("/officer/keys.pem")];
        let env = Some(PathBuf::from("/vault/keys.pem"));
        let db = "sqlite:/var/lib/audit.db";
        assert_eq!(
            checkpoint_key_paths(&flag, env.clone(), db).unwrap(),
            (flag.clone(), KeySource::Flag)
        );
        assert_eq!(
            checkpoint_key_paths(&[], env.clone(), db).unwrap(),
            (
                vec![PathBuf::from("/vault/keys.pem")],
                KeySource::Environment
            )
        );
        // The attacker's reach: the file the collector wrote next to the database.
        let (paths, source) = checkpoint_key_paths(&[], None, db).unwrap();
        assert_eq!(source, KeySource::BesideDatabase);
        assert_eq!(
            paths,
            [PathBuf::from("/var/lib/audit.db.checkpoint-keys.pem")]
        );
        let warning = beside_database_warning(&paths);
        assert!(warning.starts_with("WARNING"), "{warning}");
        assert!(warning.contains("--public-key"), "{warning}");
        assert!(checkpoint_key_paths(&[], None, "postgres://db/audit").is_err());
    }

    #[test]
    fn csv_fields_are_quoted_and_formula_safe() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }

    #[test]
    fn columns_cover_access_and_integrity_records() {
        let access = json!({
            "v": 1, "kind": "access", "time": "2026-11-23T16:37:08.123Z", "requestId": "r1",
            "actor": {"subject": "dr-a", "roles": ["clinician", "admin"], "session": null, "amr": null, "peer": null},
            "action": {"method": "GET", "path": "/fhir/Patient/1", "route": "p", "operation": "read"},
            "resource": {"patient": "1", "type": "Patient"},
            "inference": null, "source": {"ip": "10.0.0.1", "userAgent": null, "tls": "TLSv1.3"},
            "egress": {"host": "api.llm-vendor.example", "baaId": "BAA-1"},
            "emergency": {"reason": "patient-emergency"},
            "outcome": {"decision": "deny", "status": 403, "reason": "role", "bytes": 0, "durationMs": 1},
            "chain": {"id": "c", "seq": 1, "prev": "", "keyId": "k", "mac": ""}
        });
        let c = columns(&access);
        assert_eq!(c.len(), COLUMNS.len());
        assert_eq!(c[2], "dr-a");
        assert_eq!(c[3], "clinician admin");
        assert_eq!(c[12], "patient-emergency");
        assert_eq!(c[13], "TLSv1.3");
        assert_eq!(c[15], "api.llm-vendor.example (BAA-1)");
        assert_eq!(c[16], "deny (role)");
        assert_eq!(c[17], "403");
        let integrity = json!({
            "v": 1, "kind": "integrity", "time": "2026-11-23T16:37:08.123Z", "requestId": null,
            "integrity": {"finding": "gap", "chainId": "c", "seq": 4, "detail": "x", "record": null}
        });
        let c = columns(&integrity);
        assert_eq!(c[15], "");
        assert_eq!(c[16], "gap");
        assert_eq!(c[17], "c seq 4");
        // An inference record: the answer's hash and signature key id, whole.
        let mut inference = access.clone();
        let sha = "ab".repeat(32);
        inference["inference"] = json!({"model": "sepsis-risk", "version": "4.2.0",
            "responseSha256": sha, "responseSignatureKeyId": "r1"});
        let c = columns(&inference);
        assert_eq!(&c[8..12], ["sepsis-risk", "4.2.0", sha.as_str(), "r1"]);
        assert_eq!(max_width(COLUMNS[10]), 64);
    }
}
