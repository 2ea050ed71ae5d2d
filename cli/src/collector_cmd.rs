//! `hipaa-mesh collector`: run the audit collector (HTTP API of DESIGN.md) until SIGINT/SIGTERM,
//! then sign a final checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hipaa_collector::keys::{
    default_public_key_path, load_public_keys, mac_ring_from_env, CheckpointSigner, EncryptionKey,
    ENV_ENCRYPTION_KEY_FILE, ENV_PUBLIC_KEY_FILE,
};
use hipaa_collector::{start, system_clock, Collector, ServerConfig};

#[derive(Args)]
pub struct CollectorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: String,
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
    eprintln!(
        "hipaa-collector: listening on http://{} ({backend}); checkpoint key {key_id} ({origin}); \
         public keys in {}",
        server.addr(),
        pub_path.display()
    );
    // Waits for SIGINT / SIGTERM.
    let _ = rx.recv();
    eprintln!("hipaa-collector: stopping");
    server.shutdown()?;
    Ok(ExitCode::SUCCESS)
}
