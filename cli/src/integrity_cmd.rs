//! `hipaa-mesh integrity sign|verify|keygen|public-key`: the body signatures of the transport
//! filter (45 CFR 164.312(c)(1)), so the receiving side can check a payload was not altered.
//!
//! One key, one purpose (issue #13): request bodies are HMAC-SHA256 with the request-signing
//! key (`HIPAA_REQUEST_SIGNING_KEY`, held by the clients that sign and by the receiving
//! sidecar); responses are Ed25519, signed only in the answering workload's sidecar with
//! `HIPAA_RESPONSE_SIGNING_KEY`, and checked here with its **public** key, which can check a
//! signature but not make one. Neither is the audit MAC key.
//!
//! Secret keys come from an environment variable, never from the command line, where they
//! would land in shell history and `ps`; public keys may be given either way.

use clap::Subcommand;
use hipaa_core::integrity::{
    self, MacKeyRing, ResponseSigningKey, ResponseVerifyingKeys, DEFAULT_REQUEST_KEY_ENV,
    DEFAULT_RESPONSE_KEY_ENV,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum IntegrityCommand {
    /// Print the request `x-hipaa-signature` header value (HMAC-SHA256) for FILE's bytes
    /// (`-` for stdin).
    Sign {
        /// Environment variable holding the request-signing key.
        #[arg(long, default_value = DEFAULT_REQUEST_KEY_ENV)]
        key_env: String,
        file: PathBuf,
    },
    /// Check FILE's bytes (`-` for stdin) against a signature header value: a response
    /// signature (Ed25519) with `--public-key` / `--public-key-env`, otherwise a request
    /// signature (HMAC-SHA256) with the key in `--key-env`. Exit 0 when it matches, 1 when it
    /// does not.
    Verify {
        /// Environment variable holding the request-signing key (several comma-separated keys
        /// rotate).
        #[arg(long, default_value = DEFAULT_REQUEST_KEY_ENV)]
        key_env: String,
        /// Response public key(s), `KEYID:HEX` (comma-separated to rotate): verify an Ed25519
        /// response signature.
        #[arg(long, conflicts_with = "public_key_env")]
        public_key: Option<String>,
        /// Environment variable holding the response public key(s).
        #[arg(long)]
        public_key_env: Option<String>,
        /// The header value: `keyid=<id>; alg=hmac-sha256|ed25519; sig=<base64url>`.
        #[arg(long)]
        signature: String,
        file: PathBuf,
    },
    /// Print a new response-signing key (Ed25519), `KEYID:HEX`, for the answering workload's
    /// secret (`HIPAA_RESPONSE_SIGNING_KEY`). Its public key: `integrity public-key`.
    Keygen {
        #[arg(long, default_value = "r1")]
        key_id: String,
    },
    /// Print the public key (`KEYID:HEX`) of the response-signing key in `--key-env`: what
    /// receivers give `integrity verify --public-key`.
    PublicKey {
        #[arg(long, default_value = DEFAULT_RESPONSE_KEY_ENV)]
        key_env: String,
    },
}

pub fn run(cmd: IntegrityCommand) -> Result<ExitCode, String> {
    match cmd {
        IntegrityCommand::Sign { key_env, file } => {
            let keys = request_keys(&key_env)?;
            let body = read(&file)?;
            println!("{}", integrity::sign(keys.current(), &body));
            Ok(ExitCode::SUCCESS)
        }
        IntegrityCommand::Verify {
            key_env,
            public_key,
            public_key_env,
            signature,
            file,
        } => {
            let public = match (public_key, public_key_env) {
                (Some(text), _) => Some(public_keys(&text, "--public-key")?),
                (None, Some(var)) => Some(public_keys(&env(&var)?, &var)?),
                (None, None) => None,
            };
            let body = read(&file)?;
            let outcome = match &public {
                Some(keys) => integrity::verify_response(keys, signature.trim(), &body),
                None => integrity::verify(&request_keys(&key_env)?, signature.trim(), &body),
            };
            match outcome {
                Ok(()) => {
                    println!("ok: {} bytes, signature valid", body.len());
                    Ok(ExitCode::SUCCESS)
                }
                // A mismatch, a key the ring does not hold, and a malformed header all mean
                // the body cannot be trusted: exit 1 (2 is kept for usage and I/O errors).
                Err(e) => {
                    eprintln!("FAILED: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        IntegrityCommand::Keygen { key_id } => {
            use rand::RngCore as _;
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let key = ResponseSigningKey::from_seed(&key_id, &seed).map_err(|e| e.to_string())?;
            println!("{}", key.to_secret_text());
            Ok(ExitCode::SUCCESS)
        }
        IntegrityCommand::PublicKey { key_env } => {
            let key = ResponseSigningKey::parse(&env(&key_env)?)
                .map_err(|e| format!("environment variable {key_env}: {e}"))?;
            println!("{}", key.public_key_text());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn env(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
}

fn request_keys(var: &str) -> Result<MacKeyRing, String> {
    MacKeyRing::parse(&env(var)?).map_err(|e| {
        format!(
            "environment variable {var}: {}",
            e.to_string()
                .replace("the audit MAC key", "the request-signing key")
        )
    })
}

fn public_keys(text: &str, source: &str) -> Result<ResponseVerifyingKeys, String> {
    ResponseVerifyingKeys::parse(text).map_err(|e| format!("{source}: {e}"))
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    if file == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(body);
    }
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}
