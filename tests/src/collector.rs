//! The real audit collector (`hipaa-mesh collector`) on SQLite for the end-to-end tests, with its
//! keys made at test time, and the review commands (`hipaa-mesh audit verify`).

use crate::process::{port_taken, wait_for_port, Proc, START_ATTEMPTS};
use crate::{cli_bin, free_port, http, TempDir};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub const ENV_HMAC_KEY: &str = "HIPAA_AUDIT_HMAC_KEY";
pub const ENV_ENCRYPTION_KEY_FILE: &str = "HIPAA_AUDIT_ENCRYPTION_KEY_FILE";
/// The session authority's MAC key (collectors and authn VMs; its own purpose).
pub const ENV_SESSION_KEY: &str = "HIPAA_SESSION_AUTHORITY_KEY";
/// The auditors' identity provider the collector's read side trusts in the tests.
pub const READER_ISSUER: &str = "https://auditors.e2e.test";
pub const READER_AUDIENCE: &str = "hipaa-audit";

/// A record-MAC key for tests: `KEYID:HEX`, 32 bytes, different per call.
pub fn test_mac_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut hex = String::new();
    for i in 0..4u64 {
        let word = nanos
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left((i * 13) as u32)
            ^ (n + i).wrapping_mul(0xD6E8_FEB8_6659_FD93)
            ^ u64::from(std::process::id());
        hex.push_str(&format!("{word:016x}"));
    }
    format!("e2e:{hex}")
}

/// A running collector on a SQLite database in a temporary folder; killed on drop. It can be
/// stopped and started again on the same port and database.
pub struct Collector {
    pub port: u16,
    pub db: String,
    pub mac_key: String,
    /// The session-authority key (`HIPAA_SESSION_AUTHORITY_KEY`): every test collector is a
    /// session authority.
    pub session_key: String,
    enc_key_file: PathBuf,
    proc: Option<Proc>,
    starts: u32,
    dir: TempDir,
    /// The auditors' identity provider whose tokens may read the trail, and the current token
    /// (minted again after 30 minutes; tokens live at most an hour).
    reader_keys: crate::idp::Keys,
    reader_token: std::sync::Mutex<Option<(String, Instant)>>,
    /// A PostgreSQL database this collector owns (dropped with it).
    pg_database: Option<String>,
    /// `--detect-config FILE` (detector thresholds), when the test gives one.
    detect_config: Option<PathBuf>,
    /// The operators' read port (`--read-listen`), when the collector has one.
    pub read_port: Option<u16>,
    /// Started with this file-size limit in KiB (`ulimit -f`, SIGXFSZ ignored): a full disk.
    pub file_limit_kib: Option<u64>,
}

/// The PostgreSQL server the tests use (`make setup` makes sure one answers).
fn postgres_server() -> String {
    std::env::var("HIPAA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn psql(sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(postgres_server())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql not found ({e}): run `make setup`"))
}

impl Collector {
    /// A collector on a fresh SQLite database.
    pub fn start() -> Collector {
        Collector::start_with(None, None)
    }

    /// A collector on a fresh SQLite database whose detectors use `config` (YAML or JSON).
    pub fn start_detecting(config: &str) -> Collector {
        Collector::start_with(None, Some(config))
    }

    /// A collector on a fresh PostgreSQL database (the cluster store).
    pub fn start_postgres() -> Collector {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hipaa_e2e_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "cannot create a PostgreSQL database at {} (is the server running? `make setup` starts one): {}",
            postgres_server(),
            String::from_utf8_lossy(&out.stderr)
        );
        Collector::start_with(Some(name), None)
    }

    fn start_with(pg_database: Option<String>, detect: Option<&str>) -> Collector {
        let dir = TempDir::new("collector");
        let detect_config = detect.map(|text| {
            let path = dir.path().join("detect.yaml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let enc_key_file = dir.path().join("at-rest.key");
        let enc: String = test_mac_key().split(':').nth(1).unwrap().to_string();
        std::fs::write(&enc_key_file, enc).unwrap();
        let mut c = Collector {
            port: free_port(),
            db: match &pg_database {
                Some(name) => {
                    let server = postgres_server();
                    let base = server
                        .rsplit_once('/')
                        .map_or(server.as_str(), |(b, _)| b)
                        .to_string();
                    format!("{base}/{name}")
                }
                None => format!("sqlite:{}", dir.path().join("audit.db").display()),
            },
            mac_key: test_mac_key(),
            session_key: test_mac_key(),
            enc_key_file,
            proc: None,
            starts: 0,
            dir,
            reader_keys: crate::idp::Keys::generate(),
            reader_token: std::sync::Mutex::new(None),
            pg_database,
            detect_config,
            read_port: None,
            file_limit_kib: None,
        };
        c.first_start();
        c
    }

    /// A second collector on this one's PostgreSQL database with the same keys (two replicas
    /// of the collector service); the database stays owned by `self`.
    pub fn start_peer(&self) -> Collector {
        assert!(
            self.pg_database.is_some(),
            "peers share a PostgreSQL database"
        );
        let dir = TempDir::new("collector-peer");
        let enc_key_file = dir.path().join("at-rest.key");
        std::fs::copy(&self.enc_key_file, &enc_key_file).unwrap();
        let mut c = Collector {
            port: free_port(),
            db: self.db.clone(),
            mac_key: self.mac_key.clone(),
            session_key: self.session_key.clone(),
            enc_key_file,
            proc: None,
            starts: 0,
            dir,
            reader_keys: crate::idp::Keys::generate(),
            reader_token: std::sync::Mutex::new(None),
            pg_database: None,
            detect_config: None,
            read_port: None,
            file_limit_kib: None,
        };
        c.first_start();
        c
    }

    /// The environment of the authn VMs when the policy names a session authority.
    pub fn session_vm_env(&self) -> Vec<(String, String)> {
        let mut env = self.vm_env();
        env.push((ENV_SESSION_KEY.into(), self.session_key.clone()));
        env
    }

    /// A collector on a fresh SQLite database with a separate read port (`--read-listen`).
    pub fn start_with_read_port() -> Collector {
        let mut c = Collector::start();
        c.stop();
        c.read_port = Some(free_port());
        c.first_start();
        c
    }

    /// The folder this collector keeps its database and logs in.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The port reads go to: the read port when there is one.
    pub fn reads_port(&self) -> u16 {
        self.read_port.unwrap_or(self.port)
    }

    /// A token of the auditors' IdP for `sub` with `roles` (e.g. a role that may not read).
    pub fn token_for(&self, sub: &str, roles: &str) -> String {
        self.reader_keys.token(&[
            "--alg",
            "EdDSA",
            "--iss",
            READER_ISSUER,
            "--aud",
            READER_AUDIENCE,
            "--sub",
            sub,
            "--roles",
            roles,
            "--ttl",
            "3600",
        ])
    }

    /// The environment the collector and the review commands need.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (ENV_HMAC_KEY.into(), self.mac_key.clone()),
            (
                ENV_ENCRYPTION_KEY_FILE.into(),
                self.enc_key_file.display().to_string(),
            ),
            (ENV_SESSION_KEY.into(), self.session_key.clone()),
        ]
    }

    /// The environment the Wasm VMs need (the MAC key only).
    pub fn vm_env(&self) -> Vec<(String, String)> {
        vec![(ENV_HMAC_KEY.into(), self.mac_key.clone())]
    }

    /// The first start, before anything knows its ports: when one was taken between
    /// `free_port()` and the bind, start again on fresh ones; any other exit fails the test.
    fn first_start(&mut self) {
        for attempt in 1.. {
            match self.spawn_ready() {
                Ok(()) => return,
                Err(log) if attempt < START_ATTEMPTS && port_taken(&log) => {
                    eprintln!(
                        "the collector could not bind port {} (attempt {attempt}); starting \
                         again on fresh ports",
                        self.port
                    );
                    self.port = free_port();
                    self.read_port = self.read_port.map(|_| free_port());
                }
                Err(log) => panic!("collector exited at start:\n{log}"),
            }
        }
    }

    /// Start (again) on the same port and database.
    pub fn restart(&mut self) {
        if let Err(log) = self.spawn_ready() {
            panic!("collector exited at start:\n{log}");
        }
    }

    /// Spawn the collector and wait until it answers `/healthz`; Err with its log when it
    /// exited first.
    fn spawn_ready(&mut self) -> Result<(), String> {
        assert!(self.proc.is_none(), "collector already running");
        self.starts += 1;
        let mut cmd = match self.file_limit_kib {
            // Ignored SIGXFSZ survives exec: a write past the limit fails with EFBIG, as on a
            // full disk, instead of killing the process.
            Some(kib) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
                    .arg(cli_bin());
                c
            }
            None => Command::new(cli_bin()),
        };
        cmd.args([
            "collector",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--db",
            &self.db,
        ])
        .args(["--checkpoint-seconds", "1"])
        .arg("--reader-jwks")
        .arg(self.reader_keys.dir.path().join("jwks.json"))
        .args([
            "--reader-issuer",
            READER_ISSUER,
            "--reader-audience",
            READER_AUDIENCE,
        ])
        .envs(self.env());
        if let Some(path) = &self.detect_config {
            cmd.arg("--detect-config").arg(path);
        }
        if let Some(read) = self.read_port {
            cmd.args(["--read-listen", &format!("127.0.0.1:{read}")]);
        }
        if self.db.starts_with("postgres") {
            // A database server is not a folder: say where the checkpoint public key goes.
            cmd.arg("--public-key-out").arg(self.public_key_file());
        }
        let log = self
            .dir
            .path()
            .join(format!("collector-{}.log", self.starts));
        let mut proc = Proc::spawn("collector", cmd, log);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !proc.alive() {
                return Err(proc.log_text());
            }
            if wait_for_port(self.port, Duration::from_millis(100))
                && http::try_request(self.port, "GET", "/healthz", &[], b"")
                    .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "collector not ready in 20 s:\n{}",
                proc.log_text()
            );
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// Stop it gracefully (SIGTERM: it signs a final checkpoint), killing it after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(proc.child.id().to_string())
                .status();
            if proc.wait_exit(Duration::from_secs(10)).is_none() {
                proc.kill();
            }
        }
    }

    /// Kill it outright (SIGKILL: a crash, no final checkpoint, a transaction cut short).
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// A bearer token of the auditors' IdP with role `auditor` (what reads need).
    pub fn reader_token(&self) -> String {
        let mut current = self
            .reader_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, at)) = current.as_ref() {
            if at.elapsed() < Duration::from_secs(1800) {
                return t.clone();
            }
        }
        let t = self.reader_keys.token(&[
            "--alg",
            "EdDSA",
            "--iss",
            READER_ISSUER,
            "--aud",
            READER_AUDIENCE,
            "--sub",
            "e2e-auditor",
            "--roles",
            "auditor",
            "--ttl",
            "3600",
        ]);
        *current = Some((t.clone(), Instant::now()));
        t
    }

    /// `GET PATH` on the collector's read side, with the auditor's token.
    pub fn get(&self, path: &str) -> http::Response {
        let auth = format!("Bearer {}", self.reader_token());
        http::get(self.reads_port(), path, &[("authorization", auth.as_str())])
    }

    /// `GET /v1/records?QUERY`: the records, in ingest order.
    pub fn records(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/v1/records?{query}"));
        assert_eq!(r.status, 200, "GET /v1/records?{query}: {}", r.body);
        match r.json() {
            Value::Array(items) => items,
            other => panic!("not an array: {other}"),
        }
    }

    /// `GET /v1/alerts?QUERY`: the alerts raised so far.
    pub fn alerts(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/v1/alerts?{query}"));
        assert_eq!(r.status, 200, "GET /v1/alerts?{query}: {}", r.body);
        match r.json() {
            Value::Array(items) => items,
            other => panic!("not an array: {other}"),
        }
    }

    /// Wait until `query` lists at least `n` alerts (then a little longer, so extra alerts
    /// would show), and return them.
    pub fn wait_for_alerts(&self, query: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.alerts(query);
            if found.len() >= n {
                std::thread::sleep(Duration::from_millis(1500));
                return self.alerts(query);
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} alerts for {query:?} after {timeout:?}:\n{}",
                found.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until `query` returns at least `n` records (then a little longer, so extra records
    /// would show), and return them.
    pub fn wait_for(&self, query: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.records(query);
            if found.len() >= n {
                std::thread::sleep(Duration::from_millis(700));
                return self.records(query);
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records for {query:?} after {timeout:?}",
                found.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `hipaa-mesh audit verify --db DB`: (exit code, stdout + stderr).
    fn public_key_file(&self) -> PathBuf {
        self.dir.path().join("checkpoint-keys.pem")
    }

    pub fn verify(&self) -> (i32, String) {
        let mut cmd = Command::new(cli_bin());
        cmd.args(["audit", "verify", "--db", &self.db]);
        if self.db.starts_with("postgres") {
            cmd.arg("--public-key").arg(self.public_key_file());
        }
        let out = cmd.envs(self.env()).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// `hipaa-mesh audit query --db DB --format json ARGS`.
    pub fn query_cli(&self, args: &[&str]) -> Vec<Value> {
        let out = Command::new(cli_bin())
            .args(["audit", "query", "--db", &self.db, "--format", "json"])
            .args(args)
            .envs(self.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "audit query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match serde_json::from_slice(&out.stdout).unwrap() {
            Value::Array(items) => items,
            other => panic!("not an array: {other}"),
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if let Some(name) = &self.pg_database {
            let _ = psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}
