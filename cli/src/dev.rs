//! `hipaa-mesh dev ...`: a local demo identity provider (key pairs, a JWKS, signed tokens)
//! and a sample upstream that echoes what it received. For local use only: these keys are
//! written unencrypted to disk and the upstream has no authentication of its own.

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Subcommand)]
pub enum DevCommand {
    /// Write an RSA, an EC P-256 and an Ed25519 signing key and their public JWKS to DIR.
    Keys {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a signed access token (the demo identity provider).
    Token(Box<TokenArgs>),
    /// Serve a sample upstream that answers every request with a JSON echo of it.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Alg {
    #[value(name = "RS256")]
    RS256,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "EdDSA")]
    EdDSA,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The folder written by `dev keys`.
    #[arg(long)]
    keys: PathBuf,
    #[arg(long, value_enum, default_value = "RS256")]
    alg: Alg,
    #[arg(long, default_value = "https://idp.demo.local")]
    iss: String,
    #[arg(long, default_value = "ehr-api")]
    aud: String,
    #[arg(long)]
    sub: Option<String>,
    /// Comma-separated roles.
    #[arg(long, default_value = "")]
    roles: String,
    /// Comma-separated RFC 8176 authentication methods.
    #[arg(long, default_value = "pwd")]
    amr: String,
    /// Session id (`sid`).
    #[arg(long)]
    sid: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 600)]
    ttl: i64,
    /// Seconds since sign-in (`auth_time` = now - this; default 0: signed in now).
    #[arg(long)]
    auth_age: Option<i64>,
    /// Leave `auth_time` out (an IdP that omits it; refused on PHI routes unless the policy
    /// sets `identity.session.requireAuthTime: false`).
    #[arg(long, conflicts_with = "auth_age")]
    no_auth_time: bool,
    /// Override the key id in the header.
    #[arg(long)]
    kid: Option<String>,
    /// Extra or replacement claims, as a JSON object.
    #[arg(long)]
    claims: Option<String>,
}

pub fn run(cmd: DevCommand) -> Result<ExitCode, String> {
    match cmd {
        DevCommand::Keys { out } => keys(&out),
        DevCommand::Token(args) => {
            println!("{}", token(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::Upstream { listen } => upstream(&listen),
    }
}

fn keys(out: &Path) -> Result<ExitCode, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use rsa::traits::PublicKeyParts;

    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut rng = rand::thread_rng();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
    let ec_key = p256::SecretKey::random(&mut rng);
    let ed_key = ed25519_dalek::SigningKey::generate(&mut rng);

    let lf = rsa::pkcs8::LineEnding::LF;
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        "rsa.pem",
        rsa_key
            .to_pkcs8_pem(lf)
            .map_err(|e| e.to_string())?
            .as_str(),
    )?;
    write(
        "ec.pem",
        ec_key.to_pkcs8_pem(lf).map_err(|e| e.to_string())?.as_str(),
    )?;
    write(
        "ed25519.pem",
        ed_key.to_pkcs8_pem(lf).map_err(|e| e.to_string())?.as_str(),
    )?;

    let b64 = |bytes: &[u8]| base64_url(bytes);
    let ec_point = ec_key.public_key().to_encoded_point(false);
    let (x, y) = match (ec_point.x(), ec_point.y()) {
        (Some(x), Some(y)) => (b64(x), b64(y)),
        _ => return Err("EC point encoding failed".into()),
    };
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "demo-rsa", "alg": "RS256", "use": "sig",
         "n": b64(&rsa_key.n().to_bytes_be()), "e": b64(&rsa_key.e().to_bytes_be())},
        {"kty": "EC", "kid": "demo-ec", "alg": "ES256", "use": "sig", "crv": "P-256", "x": x, "y": y},
        {"kty": "OKP", "kid": "demo-ed25519", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
         "x": b64(ed_key.verifying_key().as_bytes())}
    ]});
    write("jwks.json", &jwks.to_string())?;
    println!(
        "wrote rsa.pem, ec.pem, ed25519.pem and jwks.json to {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token(args: &TokenArgs) -> Result<String, String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let read = |name: &str| {
        let path = args.keys.join(name);
        std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read {}: {e} (run `hipaa-mesh dev keys` first)",
                path.display()
            )
        })
    };
    let (alg, kid, key) = match args.alg {
        Alg::RS256 => (
            Algorithm::RS256,
            "demo-rsa",
            EncodingKey::from_rsa_pem(&read("rsa.pem")?),
        ),
        Alg::ES256 => (
            Algorithm::ES256,
            "demo-ec",
            EncodingKey::from_ec_pem(&read("ec.pem")?),
        ),
        Alg::EdDSA => (
            Algorithm::EdDSA,
            "demo-ed25519",
            EncodingKey::from_ed_pem(&read("ed25519.pem")?),
        ),
    };
    let key = key.map_err(|e| format!("bad key: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    };
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(args.iss));
    claims.insert("aud".into(), json!(args.aud));
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), json!(sub));
    }
    claims.insert("roles".into(), json!(list(&args.roles)));
    claims.insert("amr".into(), json!(list(&args.amr)));
    if let Some(sid) = &args.sid {
        claims.insert("sid".into(), json!(sid));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + args.ttl));
    if !args.no_auth_time {
        claims.insert("auth_time".into(), json!(now - args.auth_age.unwrap_or(0)));
    }
    if let Some(extra) = &args.claims {
        let extra: Map<String, Value> = serde_json::from_str(extra)
            .map_err(|e| format!("--claims is not a JSON object: {e}"))?;
        claims.extend(extra);
    }
    let mut header = Header::new(alg);
    header.kid = Some(args.kid.clone().unwrap_or_else(|| kid.to_string()));
    jsonwebtoken::encode(&header, &Value::Object(claims), &key)
        .map_err(|e| format!("signing failed: {e}"))
}

fn upstream(listen: &str) -> Result<ExitCode, String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("sample upstream listening on {listen}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve_connection(stream);
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// HTTP/1.1 keep-alive loop: answer each request with a JSON echo of method, path and headers.
fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Map::new();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().to_string();
                if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                }
                headers.insert(k, Value::String(v));
            }
        }
        let mut body = vec![0u8; content_length.min(16 * 1024 * 1024)];
        reader.read_exact(&mut body)?;
        let echo =
            json!({"method": method, "path": path, "headers": headers, "bodyBytes": body.len()});
        let text = echo.to_string();
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            text.len(),
            text
        )?;
        writer.flush()?;
    }
}
