//! `hipaa-mesh integrity sign|verify`: the body signatures of the transport filter
//! (45 CFR 164.312(c)(1)), so the receiving side can check a payload was not altered.
//!
//! The key comes from an environment variable (the audit MAC key, `KEYID:HEX` or `HEX`),
//! never from the command line, where it would land in shell history and `ps`.

use clap::Subcommand;
use hipaa_core::integrity::{self, MacKeyRing, DEFAULT_KEY_ENV};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum IntegrityCommand {
    /// Print the `x-hipaa-signature` header value for FILE's bytes (`-` for stdin).
    Sign {
        /// Environment variable holding the MAC key.
        #[arg(long, default_value = DEFAULT_KEY_ENV)]
        key_env: String,
        file: PathBuf,
    },
    /// Check FILE's bytes (`-` for stdin) against a signature header value.
    /// Exit 0 when it matches, 1 when it does not.
    Verify {
        /// Environment variable holding the MAC key (several comma-separated keys rotate).
        #[arg(long, default_value = DEFAULT_KEY_ENV)]
        key_env: String,
        /// The header value: `keyid=<id>; alg=hmac-sha256; sig=<base64url>`.
        #[arg(long)]
        signature: String,
        file: PathBuf,
    },
}

pub fn run(cmd: IntegrityCommand) -> Result<ExitCode, String> {
    match cmd {
        IntegrityCommand::Sign { key_env, file } => {
            let keys = keys(&key_env)?;
            let body = read(&file)?;
            println!("{}", integrity::sign(keys.current(), &body));
            Ok(ExitCode::SUCCESS)
        }
        IntegrityCommand::Verify {
            key_env,
            signature,
            file,
        } => {
            let keys = keys(&key_env)?;
            let body = read(&file)?;
            match integrity::verify(&keys, signature.trim(), &body) {
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
    }
}

fn keys(var: &str) -> Result<MacKeyRing, String> {
    let text = std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
    MacKeyRing::parse(&text).map_err(|e| format!("environment variable {var}: {e}"))
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
