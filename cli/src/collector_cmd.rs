//! `hipaa-mesh collector`: run the audit collector (HTTP API of DESIGN.md) until SIGINT/SIGTERM,
//! then sign a final checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hipaa_collector::alerts::webhook::Webhook;
use hipaa_collector::alerts::DetectConfig;
use hipaa_collector::keys::{
    default_public_key_path, load_public_keys, mac_ring_from_env, CheckpointSigner, EncryptionKey,
    ENV_ENCRYPTION_KEY_FILE, ENV_PUBLIC_KEY_FILE,
};
use hipaa_collector::read_auth::{
    ReadAuth, DEFAULT_READER_ROLE, ENV_READER_AUDIENCE, ENV_READER_ISSUER, ENV_READER_JWKS_FILE,
    ENV_READER_ROLE,
};
use hipaa_collector::{start, system_clock, Collector, ServerConfig};

#[derive(Args)]
pub struct CollectorArgs {
    /// Address to listen on (behind the collector's mesh sidecar).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: String,
    /// A separate address for the operators' reads (`GET /v1/records`, `GET /v1/verify`), never
    /// exposed through the mesh sidecar. When set, --listen answers only `POST /v1/records` and
    /// `GET /healthz` (reads are 404 there).
    #[arg(long)]
    read_listen: Option<String>,
    /// Records a sender may post that cannot be trusted (malformed, bad MAC, unknown key), per
    /// second, before its batches get 429 with Retry-After.
    #[arg(long, default_value_t = hipaa_collector::ingest_limit::DEFAULT_PER_SECOND)]
    garbage_per_second: u32,
    /// ... and at once (the bucket's size).
    #[arg(long, default_value_t = hipaa_collector::ingest_limit::DEFAULT_BURST)]
    garbage_burst: u32,
    /// The audit database: sqlite:PATH or postgres://...
    #[arg(long)]
    db: String,
    /// Sign a checkpoint (ledger count + head hash, Ed25519) this often when the ledger changed;
    /// one is always signed at shutdown.
    #[arg(long, default_value_t = 60)]
    checkpoint_seconds: u64,
    /// HTTP worker threads (each holds one database connection).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// File the checkpoint public key is appended to (what `audit verify` reads). Default:
    /// $HIPAA_AUDIT_CHECKPOINT_PUBLIC_KEY_FILE, else PATH.checkpoint-keys.pem next to a SQLite
    /// database; required for PostgreSQL when that variable is unset.
    #[arg(long)]
    public_key_out: Option<PathBuf>,
    /// JWKS file of the identity provider whose tokens may read the trail (`GET /v1/records`,
    /// `GET /v1/verify`); default $HIPAA_AUDIT_READER_JWKS_FILE. Without it every read is 401.
    #[arg(long)]
    reader_jwks: Option<PathBuf>,
    /// The readers' token issuer (default $HIPAA_AUDIT_READER_ISSUER).
    #[arg(long)]
    reader_issuer: Option<String>,
    /// The readers' token audience (default $HIPAA_AUDIT_READER_AUDIENCE, else hipaa-audit).
    #[arg(long)]
    reader_audience: Option<String>,
    /// The role a reader's token must carry (default $HIPAA_AUDIT_READER_ROLE, else auditor).
    /// The same credential may revoke sessions (`POST /v1/sessions/revoke`).
    #[arg(long)]
    reader_role: Option<String>,
    /// Session authority: forget session activity older than this (at least the longest
    /// `absoluteTimeoutSeconds` of the mesh plus skew). Needs $HIPAA_SESSION_AUTHORITY_KEY.
    #[arg(long, default_value_t = hipaa_collector::sessions::DEFAULT_RETENTION_SECONDS)]
    session_retention_seconds: u64,
    /// Session authority: how long a revocation stays in force unless the request says (the
    /// longest `maxTokenLifetimeSeconds` of the mesh plus skew).
    #[arg(long, default_value_t = hipaa_collector::sessions::DEFAULT_REVOCATION_TTL_SECONDS)]
    revocation_ttl_seconds: u64,
    /// Detector thresholds (YAML or JSON; DESIGN.md "Alerts"). Without it the detectors run with
    /// their defaults; `enabled: false` turns them off. An unknown key refuses to start.
    #[arg(long)]
    detect_config: Option<PathBuf>,
    /// POST each alert here (JSON, signed x-hipaa-signature: sha256=HMAC), retried until 2xx.
    #[arg(long, requires = "alert_webhook_secret_file")]
    alert_webhook: Option<String>,
    /// The webhook's own HMAC key (at least 16 bytes; no other key of the collector).
    #[arg(long, requires = "alert_webhook")]
    alert_webhook_secret_file: Option<PathBuf>,
}

/// The read side's credential check from flags and environment (None: reads are refused).
fn read_auth(args: &CollectorArgs) -> Result<Option<ReadAuth>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(jwks_path) = args
        .reader_jwks
        .clone()
        .or_else(|| env(ENV_READER_JWKS_FILE).map(PathBuf::from))
    else {
        return Ok(None);
    };
    let jwks = std::fs::read_to_string(&jwks_path)
        .map_err(|e| format!("cannot read {}: {e}", jwks_path.display()))?;
    let issuer = args
        .reader_issuer
        .clone()
        .or_else(|| env(ENV_READER_ISSUER))
        .ok_or_else(|| format!("--reader-jwks needs --reader-issuer (or {ENV_READER_ISSUER})"))?;
    let audience = args
        .reader_audience
        .clone()
        .or_else(|| env(ENV_READER_AUDIENCE))
        .unwrap_or_else(|| "hipaa-audit".into());
    let role = args
        .reader_role
        .clone()
        .or_else(|| env(ENV_READER_ROLE))
        .unwrap_or_else(|| DEFAULT_READER_ROLE.into());
    ReadAuth::new(&jwks, &issuer, &audience, &role).map(Some)
}

pub fn run(args: CollectorArgs) -> Result<ExitCode, String> {
    let mac_keys = mac_ring_from_env().map_err(|e| {
        format!("{e}: the collector checks every record's MAC with the filters' key")
    })?;
    let encryption = EncryptionKey::from_env().map_err(|e| {
        format!(
            "{e}: the collector refuses to start without its at-rest key ({ENV_ENCRYPTION_KEY_FILE} \
             names a file of 32 raw bytes or 64 hex characters, kept apart from the database)"
        )
    })?;
    let signer = CheckpointSigner::from_env_or_generate().map_err(|e| e.to_string())?;
    let pub_path = args
        .public_key_out
        .clone()
        .or_else(|| std::env::var_os(ENV_PUBLIC_KEY_FILE).map(PathBuf::from))
        .or_else(|| default_public_key_path(&args.db))
        .ok_or_else(|| {
            format!(
                "a PostgreSQL collector needs --public-key-out FILE (or {ENV_PUBLIC_KEY_FILE}) to \
                 publish its checkpoint public key"
            )
        })?;
    signer
        .publish_public_key(&pub_path)
        .map_err(|e| e.to_string())?;
    let known_keys = load_public_keys(&pub_path).map_err(|e| e.to_string())?;
    let key_id = signer.key_id();
    let origin = if signer.generated {
        "generated at start; set HIPAA_AUDIT_SIGNING_KEY_FILE to keep one"
    } else {
        "from HIPAA_AUDIT_SIGNING_KEY_FILE"
    };

    let mut config = ServerConfig::new(&args.listen, &args.db);
    config.checkpoint_seconds = args.checkpoint_seconds;
    config.workers = args.workers.max(1);
    config.read_listen = args.read_listen.clone();
    config.garbage = std::sync::Arc::new(hipaa_collector::ingest_limit::GarbageLimiter::new(
        args.garbage_per_second,
        args.garbage_burst,
        hipaa_collector::ingest_limit::DEFAULT_MAX_SOURCES,
    ));
    let readers = read_auth(&args)?;
    let reads = if readers.is_some() {
        "reads need a reader token"
    } else {
        "reads refused (no --reader-jwks)"
    };
    config.read_auth = readers.map(std::sync::Arc::new);
    let sessions = hipaa_collector::sessions::SessionAuthority::from_env()?.map(|mut a| {
        a.retention_seconds = args.session_retention_seconds;
        a.revocation_ttl_seconds = args.revocation_ttl_seconds;
        a
    });
    let authority = if sessions.is_some() {
        "session authority on"
    } else {
        "session authority off (no HIPAA_SESSION_AUTHORITY_KEY)"
    };
    config.sessions = sessions.map(std::sync::Arc::new);
    config.detect = Some(match &args.detect_config {
        Some(path) => DetectConfig::load(path)?,
        None => DetectConfig::default(),
    });
    let detection = if config.detect.as_ref().is_some_and(|d| d.enabled) {
        "detection on"
    } else {
        "detection off"
    };
    if let (Some(url), Some(secret)) = (&args.alert_webhook, &args.alert_webhook_secret_file) {
        let bytes =
            std::fs::read(secret).map_err(|e| format!("cannot read {}: {e}", secret.display()))?;
        config.webhook = Some(Webhook::new(url, &bytes)?);
    }
    let backend = if args.db.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let collector = Collector {
        mac_keys,
        encryption,
        clock: system_clock(),
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let server = start(config, collector, signer, known_keys)?;
    let read_side = match server.read_addr() {
        Some(a) => format!("reads on http://{a} only"),
        None => "reads on the same port".into(),
    };
    eprintln!(
        "hipaa-collector: listening on http://{} ({backend}); checkpoint key {key_id} ({origin}); \
         public keys in {}; {reads}; {read_side}; {authority}; {detection}",
        server.addr(),
        pub_path.display()
    );
    // Waits for SIGINT / SIGTERM.
    let _ = rx.recv();
    eprintln!("hipaa-collector: stopping");
    server.shutdown()?;
    Ok(ExitCode::SUCCESS)
}
