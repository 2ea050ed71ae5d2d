//! The collector's HTTP API (DESIGN.md): `POST /v1/records`, `GET /v1/records`, `GET /v1/verify`,
//! `GET /healthz`. A small synchronous server (tiny_http) with a fixed pool of worker threads,
//! each with its own database connection for reads, one ingest writer and one checkpoint thread.
//!
//! Ingest is group commit: a worker parses and [`prepare`]s a batch (no database needed), hands
//! it to the writer and waits. The writer takes every batch waiting (up to
//! [`MAX_GROUP_RECORDS`]) and stores them in one transaction; only after it has committed does
//! each worker answer its sender, with that batch's own summary. A failed transaction fails every
//! batch in it (each sender gets 503 and retries); nothing of them is stored. Writers no longer
//! contend for the ledger lock inside one process, and one commit (one fsync) serves every
//! batch that arrived while the previous one was being written.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::alerts::runner::Runner;
use crate::alerts::webhook::{self, Webhook};
use crate::alerts::DetectConfig;
use crate::checkpoint::{sign_checkpoint, sign_checkpoint_if_changed};
use crate::ingest::{ingest_prepared, prepare, Collector, IngestSummary, PreparedBatch};
use crate::ingest_limit::{xfcc_uri, GarbageLimiter};
use crate::keys::CheckpointSigner;
use crate::query::{parse_query_string, query, QueryError};
use crate::read_auth::{ReadAuth, Reader, Refusal};
use crate::sessions::SessionAuthority;
use crate::store::{open_store, Store};
use crate::verify::{verify, VerifyKeys};

/// The largest request body accepted by default; larger gets 413. The same constant the filters
/// cut their batches at (`hipaa_core::audit::limits::MAX_BATCH_BYTES`, 4 MiB), so a filter's
/// batch is never refused for its size by a collector left at its default; a filter that meets
/// a smaller limit splits the batch (`hipaa_core::audit::delivery`).
pub const DEFAULT_MAX_BODY: usize = hipaa_core::audit::limits::MAX_BATCH_BYTES;

/// The writer stops adding waiting batches to a transaction once it holds this many records
/// (a single larger batch still goes in whole), so one commit never keeps senders waiting long.
pub const MAX_GROUP_RECORDS: usize = 4000;

/// A batch handed to the ingest writer, and where its answer goes.
struct IngestJob {
    batch: PreparedBatch,
    reply: mpsc::SyncSender<Result<IngestSummary, String>>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `127.0.0.1:9100`; port 0 picks a free one.
    pub listen: String,
    /// `sqlite:PATH` or `postgres://...`.
    pub db_url: String,
    /// Sign a checkpoint this often (when the ledger changed); 0 disables the timer.
    pub checkpoint_seconds: u64,
    pub workers: usize,
    pub max_body: usize,
    /// Who may read (`GET /v1/records`, `GET /v1/verify`): None refuses every read with 401.
    /// The same operator credential revokes sessions (`POST /v1/sessions/revoke`).
    pub read_auth: Option<Arc<ReadAuth>>,
    /// The session authority (`crate::sessions`): None answers its endpoints 503.
    pub sessions: Option<Arc<SessionAuthority>>,
    /// The detectors' thresholds; None (or `enabled: false`) runs no detector.
    pub detect: Option<DetectConfig>,
    /// Where each stored alert is POSTed, signed.
    pub webhook: Option<Webhook>,
    /// A separate listener for the reads (operators, not the mesh). When set, the `listen`
    /// address answers only `POST /v1/records` and `GET /healthz` (reads are 404 there), and
    /// this one only the reads and `GET /healthz`.
    pub read_listen: Option<String>,
    /// Per-source garbage budget on ingest (429 with Retry-After once spent).
    pub garbage: Arc<GarbageLimiter>,
}

impl ServerConfig {
    pub fn new(listen: &str, db_url: &str) -> ServerConfig {
        ServerConfig {
            listen: listen.to_string(),
            db_url: db_url.to_string(),
            checkpoint_seconds: 60,
            workers: 4,
            max_body: DEFAULT_MAX_BODY,
            read_auth: None,
            sessions: None,
            detect: Some(DetectConfig::default()),
            webhook: None,
            read_listen: None,
            garbage: Arc::new(GarbageLimiter::default()),
        }
    }
}

/// What a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Everything (no separate read listener).
    All,
    /// What the filters call: `POST /v1/records`, the session authority's `POST
    /// /v1/sessions/check` and `GET /v1/revocations`, and `GET /healthz`: the mesh-facing port.
    Ingest,
    /// Everything else (the operators' reads and decisions: records, verify, alerts,
    /// incidents, revocations by hand) and `GET /healthz`: the operators' port.
    Read,
}

impl Role {
    fn serves(self, method: &Method, path: &str) -> bool {
        let from_filters = matches!(
            (method, path),
            (Method::Post, "/v1/records" | "/v1/sessions/check") | (_, "/v1/revocations")
        );
        match (self, path) {
            (_, "/healthz") | (Role::All, _) => true,
            (Role::Ingest, _) => from_filters,
            (Role::Read, _) => !from_filters,
        }
    }
}

struct Shared {
    config: ServerConfig,
    collector: Collector,
    signer: CheckpointSigner,
    checkpoint_keys: Vec<VerifyingKey>,
    stop: AtomicBool,
}

/// A running collector. [`RunningServer::shutdown`] stops it and signs a final checkpoint.
pub struct RunningServer {
    addr: SocketAddr,
    read_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    servers: Vec<Arc<Server>>,
    threads: Vec<JoinHandle<()>>,
}

fn bind(listen: &str) -> Result<(Server, SocketAddr), String> {
    let server = Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| "listening address is not an IP address".to_string())?;
    Ok((server, addr))
}

/// Starts the server: opens (and if needed creates) the database, binds, spawns the workers.
/// `checkpoint_keys` are the public keys `GET /v1/verify` accepts (the signer's own is added).
pub fn start(
    config: ServerConfig,
    collector: Collector,
    signer: CheckpointSigner,
    mut checkpoint_keys: Vec<VerifyingKey>,
) -> Result<RunningServer, String> {
    // Fail early, with a clear message, if the database cannot be opened.
    let mut probe = open_store(&config.db_url).map_err(|e| format!("audit database: {e}"))?;
    probe.ping().map_err(|e| format!("audit database: {e}"))?;
    drop(probe);
    let (server, addr) = bind(&config.listen)?;
    let read = match &config.read_listen {
        Some(listen) => Some(bind(listen)?),
        None => None,
    };
    if !checkpoint_keys.contains(&signer.verifying_key()) {
        checkpoint_keys.push(signer.verifying_key());
    }
    let shared = Arc::new(Shared {
        config,
        collector,
        signer,
        checkpoint_keys,
        stop: AtomicBool::new(false),
    });
    let server = Arc::new(server);
    let read_addr = read.as_ref().map(|(_, a)| *a);
    let mut listeners = vec![(
        server.clone(),
        if read.is_some() {
            Role::Ingest
        } else {
            Role::All
        },
        shared.config.workers.max(1),
    )];
    if let Some((read_server, _)) = read {
        // Reads are rare and slow (decryption, verify): two workers are plenty.
        listeners.push((Arc::new(read_server), Role::Read, 2));
    }
    let mut threads = Vec::new();
    // The writer ends once every worker (each holding a sender) has ended: it finishes what
    // they handed it first. Workers are joined before it (see `shutdown`).
    let (jobs, job_queue) = mpsc::channel::<IngestJob>();
    for (server, role, workers) in &listeners {
        for i in 0..*workers {
            let (shared, server, jobs, role) =
                (shared.clone(), server.clone(), jobs.clone(), *role);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("collector-{role:?}-{i}").to_lowercase())
                    .spawn(move || worker(&shared, &server, &jobs, role))
                    .map_err(|e| format!("cannot start worker thread: {e}"))?,
            );
        }
    }
    drop(jobs);
    if shared.config.checkpoint_seconds > 0 {
        let shared2 = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("collector-checkpoint".into())
                .spawn(move || checkpointer(&shared2))
                .map_err(|e| format!("cannot start checkpoint thread: {e}"))?,
        );
    }
    if shared.config.sessions.is_some() {
        let shared2 = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("collector-sessions".into())
                .spawn(move || session_pruner(&shared2))
                .map_err(|e| format!("cannot start session thread: {e}"))?,
        );
    }
    if let Some(cfg) = shared.config.detect.clone().filter(|c| c.enabled) {
        let shared2 = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("collector-detect".into())
                .spawn(move || detector(&shared2, cfg))
                .map_err(|e| format!("cannot start detect thread: {e}"))?,
        );
    }
    if let Some(hook) = shared.config.webhook.clone() {
        let shared2 = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("collector-webhook".into())
                .spawn(move || alert_webhook(&shared2, &hook))
                .map_err(|e| format!("cannot start webhook thread: {e}"))?,
        );
    }
    let shared2 = shared.clone();
    threads.push(
        std::thread::Builder::new()
            .name("collector-ingest".into())
            .spawn(move || ingest_writer(&shared2, &job_queue))
            .map_err(|e| format!("cannot start ingest thread: {e}"))?,
    );
    Ok(RunningServer {
        addr,
        read_addr,
        shared,
        servers: listeners.into_iter().map(|(s, _, _)| s).collect(),
        threads,
    })
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The read listener's address, when there is one.
    pub fn read_addr(&self) -> Option<SocketAddr> {
        self.read_addr
    }

    /// Stops accepting, lets in-flight requests finish, then signs a final checkpoint.
    pub fn shutdown(self) -> Result<(), String> {
        self.shared.stop.store(true, Ordering::SeqCst);
        for server in &self.servers {
            server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
        let mut store =
            open_store(&self.shared.config.db_url).map_err(|e| format!("final checkpoint: {e}"))?;
        let cp = sign_checkpoint(
            store.as_mut(),
            &self.shared.signer,
            (self.shared.collector.clock)(),
        )
        .map_err(|e| format!("final checkpoint: {e}"))?;
        log_checkpoint("final checkpoint", &cp);
        Ok(())
    }
}

fn log_checkpoint(what: &str, cp: &crate::store::Checkpoint) {
    // Counts, hashes and signatures only: no PHI. Shipping these lines elsewhere keeps a copy of
    // every checkpoint out of the database's reach.
    eprintln!(
        "hipaa-collector: {what} count={} head={} key={} created_ms={} sig={}",
        cp.ledger_count, cp.head_hash, cp.key_id, cp.created_ms, cp.signature
    );
}

fn checkpointer(shared: &Shared) {
    let every = Duration::from_secs(shared.config.checkpoint_seconds);
    let mut last: Option<(i64, String)> = None;
    let mut next = Instant::now() + every;
    let mut store: Option<Box<dyn Store>> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        if store.is_none() {
            store = open_store(&shared.config.db_url)
                .map_err(|e| eprintln!("hipaa-collector: checkpoint: {e}"))
                .ok();
        }
        let Some(s) = store.as_mut() else { continue };
        let unchanged = last.as_ref().map(|(c, h)| (*c, h.as_str()));
        match sign_checkpoint_if_changed(
            s.as_mut(),
            &shared.signer,
            (shared.collector.clock)(),
            unchanged,
        ) {
            Ok(Some(cp)) => {
                log_checkpoint("checkpoint", &cp);
                last = Some((cp.ledger_count, cp.head_hash));
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("hipaa-collector: checkpoint: {e}");
                store = None;
            }
        }
    }
}

/// How often the session authority forgets old activity and expired revocations.
const SESSION_PRUNE_EVERY: Duration = Duration::from_secs(60);

fn session_pruner(shared: &Shared) {
    let Some(authority) = shared.config.sessions.as_ref() else {
        return;
    };
    let mut next = Instant::now();
    let mut store: Option<Box<dyn Store>> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + SESSION_PRUNE_EVERY;
        if store.is_none() {
            store = open_store(&shared.config.db_url)
                .map_err(|e| eprintln!("hipaa-collector: session pruning: {e}"))
                .ok();
        }
        let Some(s) = store.as_mut() else { continue };
        if let Err(e) = crate::sessions::prune(s.as_mut(), authority, (shared.collector.clock)()) {
            eprintln!("hipaa-collector: session pruning: {e}");
            store = None;
        }
    }
}

/// Sleeps `d` in short steps; false when the server is stopping.
fn pause(shared: &Shared, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !shared.stop.load(Ordering::SeqCst)
}

/// The detectors' loop (`crate::alerts::runner`), on its own connection: ingest never waits
/// for it. A store error reconnects and rebuilds the state from the lookback.
fn detector(shared: &Shared, cfg: DetectConfig) {
    let every = Duration::from_millis(cfg.poll_millis);
    let enc = &shared.collector.encryption;
    let mut state: Option<(Box<dyn Store>, Runner)> = None;
    while pause(shared, every) {
        if state.is_none() {
            let now = (shared.collector.clock)();
            state = open_store(&shared.config.db_url)
                .and_then(|mut s| Runner::start(s.as_mut(), enc, cfg.clone(), now).map(|r| (s, r)))
                .map_err(|e| eprintln!("hipaa-collector: detect: {e}"))
                .ok();
        }
        let Some((store, runner)) = state.as_mut() else {
            continue;
        };
        // Catch up in steps, checking for shutdown between them.
        loop {
            match runner.step(store.as_mut(), enc, (shared.collector.clock)()) {
                Ok(step) if step.rows > 0 && !shared.stop.load(Ordering::SeqCst) => {}
                Ok(_) => break,
                Err(e) => {
                    eprintln!("hipaa-collector: detect: {e}");
                    state = None;
                    break;
                }
            }
        }
    }
}

/// Delivers stored alerts to the webhook, retrying with exponential backoff.
fn alert_webhook(shared: &Shared, hook: &Webhook) {
    let agent = webhook::agent();
    let mut store: Option<Box<dyn Store>> = None;
    let mut backoff = webhook::FIRST_BACKOFF;
    let mut wait = Duration::from_millis(500);
    while pause(shared, wait) {
        if store.is_none() {
            store = open_store(&shared.config.db_url)
                .map_err(|e| eprintln!("hipaa-collector: webhook: {e}"))
                .ok();
        }
        let Some(s) = store.as_mut() else {
            wait = backoff;
            backoff = webhook::next_backoff(backoff);
            continue;
        };
        match webhook::deliver_pending(s.as_mut(), &shared.collector.encryption, hook, &agent) {
            Ok(_) => {
                backoff = webhook::FIRST_BACKOFF;
                wait = Duration::from_millis(500);
            }
            Err(e) => {
                if matches!(e, webhook::DeliveryError::Store(_)) {
                    store = None;
                }
                eprintln!(
                    "hipaa-collector: webhook: {e}; retrying in {} s",
                    backoff.as_secs()
                );
                wait = backoff;
                backoff = webhook::next_backoff(backoff);
            }
        }
    }
}

/// Stores the batches the workers hand over, as many per transaction as are waiting.
fn ingest_writer(shared: &Shared, queue: &mpsc::Receiver<IngestJob>) {
    let mut store: Option<Box<dyn Store>> = None;
    // Ends when every worker has ended and the queue is empty.
    while let Ok(first) = queue.recv() {
        let mut records = first.batch.len();
        let mut group = vec![first];
        while records < MAX_GROUP_RECORDS {
            match queue.try_recv() {
                Ok(job) => {
                    records += job.batch.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<PreparedBatch>, Vec<_>) =
            group.into_iter().map(|j| (j.batch, j.reply)).unzip();
        if store.is_none() {
            match open_store(&shared.config.db_url) {
                Ok(s) => store = Some(s),
                Err(e) => eprintln!("hipaa-collector: audit database: {e}"),
            }
        }
        let count = batches.len();
        let result = match store.as_mut() {
            Some(s) => {
                ingest_prepared(s.as_mut(), &shared.collector, batches).map_err(|e| e.to_string())
            }
            None => Err("audit database unavailable".to_string()),
        };
        match result {
            Ok(summaries) => {
                for (reply, summary) in replies.into_iter().zip(summaries) {
                    // A worker that is gone has nobody to answer.
                    let _ = reply.send(Ok(summary));
                }
            }
            Err(e) => {
                eprintln!(
                    "hipaa-collector: ingest of {records} record(s) in {count} batch(es) failed: {e}"
                );
                // A store error: reconnect for the next transaction.
                store = None;
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn worker(shared: &Shared, server: &Server, jobs: &mpsc::Sender<IngestJob>, role: Role) {
    let mut store: Option<Box<dyn Store>> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("hipaa-collector: accept: {e}");
                continue;
            }
        };
        let path = request.url().split('?').next().unwrap_or_default();
        if !role.serves(request.method(), path) {
            // Reads do not exist on the mesh-facing port (and ingest not on the read port).
            error(request, 404, "not_found", "no such endpoint");
            continue;
        }
        if request.method() == &Method::Post && path == "/v1/records" {
            post_records(shared, jobs, request);
            continue;
        }
        if store.is_none() {
            match open_store(&shared.config.db_url) {
                Ok(s) => store = Some(s),
                Err(e) => {
                    eprintln!("hipaa-collector: audit database: {e}");
                    respond(request, 503, &json!({"error": "store_unavailable"}), None);
                    continue;
                }
            }
        }
        if let Some(s) = store.as_mut() {
            if !handle(shared, s.as_mut(), request) {
                // A store error: reconnect for the next request.
                store = None;
            }
        }
    }
}

pub(crate) fn respond(request: Request, status: u16, body: &Value, extra: Option<Header>) {
    let mut response = Response::from_string(body.to_string()).with_status_code(status);
    if let Ok(h) = Header::from_bytes("content-type", "application/json") {
        response.add_header(h);
    }
    if let Some(h) = extra {
        response.add_header(h);
    }
    // A client that went away cannot be answered; nothing else to do.
    let _ = request.respond(response);
}

pub(crate) fn error(request: Request, status: u16, code: &str, description: &str) {
    respond(
        request,
        status,
        &json!({"error": code, "error_description": description}),
        None,
    );
}

/// `POST /v1/records`: reads and prepares the batch, has the writer store it, answers once it
/// has committed.
fn post_records(shared: &Shared, jobs: &mpsc::Sender<IngestJob>, mut request: Request) {
    let source = source_of(&request);
    let now = (shared.collector.clock)();
    if let Err(seconds) = shared.config.garbage.admit(&source, now) {
        let retry = Header::from_bytes("retry-after", seconds.to_string()).ok();
        respond(
            request,
            429,
            &json!({"error": "rate_limited", "error_description": "too many records that could not be trusted from this sender; retry later"}),
            retry,
        );
        return;
    }
    let body = match read_body(&mut request, shared.config.max_body) {
        Ok(body) => body,
        Err((413, code)) => {
            error(request, 413, code, "batch exceeds the body limit");
            return;
        }
        Err((status, code)) => {
            error(request, status, code, "cannot read the body");
            return;
        }
    };
    let batch: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(Value::Array(items)) => items,
        _ => {
            shared.config.garbage.charge(&source, 1, now);
            error(
                request,
                400,
                "bad_request",
                "the body must be a JSON array of audit records",
            );
            return;
        }
    };
    drop(body);
    let (reply, answer) = mpsc::sync_channel(1);
    let batch = prepare(&shared.collector, batch);
    // Stored this time (as bounded integrity records); the next batch may have to wait.
    shared
        .config
        .garbage
        .charge(&source, batch.untrusted(), now);
    let job = IngestJob { batch, reply };
    let stored = match jobs.send(job) {
        Ok(()) => answer
            .recv()
            .unwrap_or_else(|_| Err("ingest writer stopped".to_string())),
        Err(_) => Err("ingest writer stopped".to_string()),
    };
    match stored {
        Ok(summary) => respond(request, 200, &json!(summary), None),
        // Logged by the writer (once per transaction).
        Err(_) => error(
            request,
            503,
            "store_unavailable",
            "the batch was not stored; retry",
        ),
    }
}

/// Who sent a batch: the peer identity the collector's sidecar put in
/// `x-forwarded-client-cert`, else the connection's IP address.
fn source_of(request: &Request) -> String {
    let xfcc = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("x-forwarded-client-cert"))
        .and_then(|h| xfcc_uri(h.value.as_str()).map(str::to_string));
    xfcc.unwrap_or_else(|| {
        request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into())
    })
}

/// The reader a read request's bearer token names, or why it is refused.
fn authorize(shared: &Shared, request: &Request) -> Result<Reader, Refusal> {
    let auth = shared
        .config
        .read_auth
        .as_ref()
        .ok_or(Refusal::Unauthenticated)?;
    let header = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("authorization"))
        .map(|h| h.value.as_bytes());
    let now_secs = u64::try_from((shared.collector.clock)().div_euclid(1000)).unwrap_or(0);
    auth.check(header, now_secs)
}

fn refuse(request: Request, refusal: Refusal) {
    let challenge = (refusal == Refusal::Unauthenticated)
        .then(|| Header::from_bytes("www-authenticate", "Bearer realm=\"hipaa-audit\"").ok())
        .flatten();
    respond(request, refusal.status(), &refusal.body(), challenge);
}

/// Stores who read what before the answer goes out: false (and a 503) when it cannot be stored.
fn record_read(
    shared: &Shared,
    store: &mut dyn Store,
    reader: &Reader,
    endpoint: &str,
    filter: &str,
    rows: u64,
) -> bool {
    let now = (shared.collector.clock)();
    let record = crate::trail_access::record(reader, endpoint, filter, rows, now);
    match crate::trail_access::append(store, &shared.collector.encryption, &record, now) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("hipaa-collector: recording a trail read failed: {e}");
            false
        }
    }
}

/// Handles one request. Returns false when the store failed (so the connection is renewed).
fn handle(shared: &Shared, store: &mut dyn Store, request: Request) -> bool {
    let url = request.url().to_string();
    let (path, qs) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let needs_reader = matches!(
        (request.method(), path),
        (
            Method::Get,
            "/v1/records" | "/v1/verify" | "/v1/sessions/revoked"
        ) | (Method::Post, "/v1/sessions/revoke")
    ) || crate::alerts::http::owns(path);
    let reader = match needs_reader {
        true => match authorize(shared, &request) {
            Ok(r) => Some(r),
            Err(refusal) => {
                refuse(request, refusal);
                return true;
            }
        },
        false => None,
    };
    match (request.method(), path, reader) {
        (_, p, _) if crate::incidents::api::owns(p) => incidents_call(shared, store, request),
        (_, p, Some(reader)) if crate::alerts::http::owns(p) => {
            let ctx = crate::alerts::http::Context {
                store,
                enc: &shared.collector.encryption,
                now_ms: (shared.collector.clock)(),
                reader: &reader,
            };
            crate::alerts::http::handle(ctx, request, p, qs)
        }
        (Method::Get, "/v1/records", Some(reader)) => {
            let q = match parse_query_string(qs) {
                Ok(q) => q,
                Err(e) => {
                    error(request, 400, "bad_query", &e);
                    return true;
                }
            };
            match query(store, &shared.collector.encryption, &q) {
                Ok(page) => {
                    let rows = page.records.len() as u64;
                    if !record_read(shared, store, &reader, "GET /v1/records", qs, rows) {
                        error(request, 503, "store_unavailable", "query failed");
                        return false;
                    }
                    let header = page
                        .last_ledger_seq
                        .and_then(|l| Header::from_bytes("x-hipaa-next-after", l.to_string()).ok());
                    respond(request, 200, &Value::Array(page.records), header);
                    true
                }
                Err(QueryError::BadQuery(e)) => {
                    error(request, 400, "bad_query", &e);
                    true
                }
                Err(QueryError::Tampered(l)) => {
                    error(
                        request,
                        500,
                        "tampered",
                        &format!(
                            "stored record at ledger #{l} fails authentication; run audit verify"
                        ),
                    );
                    true
                }
                Err(QueryError::Store(e)) => {
                    eprintln!("hipaa-collector: query failed: {e}");
                    error(request, 503, "store_unavailable", "query failed");
                    false
                }
            }
        }
        (Method::Get, "/v1/verify", Some(reader)) => {
            let keys = VerifyKeys {
                mac_keys: &shared.collector.mac_keys,
                encryption: &shared.collector.encryption,
                checkpoint_keys: &shared.checkpoint_keys,
            };
            match verify(store, &keys, (shared.collector.clock)()) {
                Ok(report) => {
                    if !record_read(shared, store, &reader, "GET /v1/verify", qs, report.rows) {
                        error(request, 503, "store_unavailable", "verify failed");
                        return false;
                    }
                    let status = if report.intact { 200 } else { 409 };
                    respond(request, status, &json!(report), None);
                    true
                }
                Err(e) => {
                    eprintln!("hipaa-collector: verify failed: {e}");
                    error(request, 503, "store_unavailable", "verify failed");
                    false
                }
            }
        }
        (Method::Post, "/v1/sessions/check", _) => post_session_check(shared, store, request),
        (Method::Get, "/v1/revocations", _) => get_revocations(shared, store, request),
        (Method::Post, "/v1/sessions/revoke", Some(reader)) => {
            post_revoke(shared, store, &reader, request)
        }
        (Method::Get, "/v1/sessions/revoked", Some(reader)) => {
            get_revoked(shared, store, &reader, request)
        }
        (Method::Get, "/healthz", _) => match store.ping() {
            Ok(()) => {
                respond(request, 200, &json!({"status": "ok"}), None);
                true
            }
            Err(_) => {
                error(request, 503, "store_unavailable", "database unreachable");
                false
            }
        },
        (
            _,
            "/v1/records"
            | "/v1/verify"
            | "/healthz"
            | "/v1/sessions/check"
            | "/v1/revocations"
            | "/v1/sessions/revoke"
            | "/v1/sessions/revoked",
            _,
        ) => {
            error(request, 405, "method_not_allowed", "method not allowed");
            true
        }
        _ => {
            error(request, 404, "not_found", "no such endpoint");
            true
        }
    }
}

// ------------------------------------------------------------------ the session authority

/// A request header's raw bytes.
fn header_bytes(request: &Request, name: &'static str) -> Option<Vec<u8>> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_bytes().to_vec())
}

/// Reads at most `max` bytes of body (refused early on a larger Content-Length): the body, or
/// the status and code to answer (413 `too_large`, 400 `bad_request`). Every endpoint that
/// takes a body reads it through here.
pub(crate) fn read_body(request: &mut Request, max: usize) -> Result<Vec<u8>, (u16, &'static str)> {
    if request.body_length().is_some_and(|n| n > max) {
        return Err((413, "too_large"));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| (400, "bad_request"))?;
    if body.len() > max {
        return Err((413, "too_large"));
    }
    Ok(body)
}

fn respond_bytes(request: Request, status: u16, body: Vec<u8>, headers: Vec<(&str, String)>) {
    let mut response = Response::from_data(body).with_status_code(status);
    for (k, v) in std::iter::once(("content-type", "application/json".to_string())).chain(headers) {
        if let Ok(h) = Header::from_bytes(k, v) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn authority_off(request: Request) -> bool {
    error(
        request,
        503,
        "not_configured",
        "this collector is not a session authority (HIPAA_SESSION_AUTHORITY_KEY is unset)",
    );
    true
}

/// `POST /v1/sessions/check` (the filters; request MAC under the session-authority key).
fn post_session_check(shared: &Shared, store: &mut dyn Store, mut request: Request) -> bool {
    use hipaa_core::authn::authority::wire::{
        open, seal, CheckRequest, Purpose, MAC_HEADER, MAX_CHECK_BODY,
    };
    let Some(authority) = shared.config.sessions.as_ref() else {
        return authority_off(request);
    };
    let body = match read_body(&mut request, MAX_CHECK_BODY) {
        Ok(b) => b,
        Err((status, code)) => {
            error(
                request,
                status,
                code,
                "the check body is too large or unreadable",
            );
            return true;
        }
    };
    let mac = header_bytes(&request, MAC_HEADER);
    let Ok(tag) = open(
        &authority.keys,
        Purpose::CheckRequest,
        mac.as_deref(),
        &[&body],
    ) else {
        error(
            request,
            401,
            "unauthorized",
            "the call is not signed with the session-authority key",
        );
        return true;
    };
    let Ok(check) = CheckRequest::parse(&body) else {
        error(
            request,
            400,
            "bad_request",
            "the body is not a valid session check",
        );
        return true;
    };
    let now = (shared.collector.clock)();
    match crate::sessions::check(store, &shared.collector.encryption, &check, now) {
        Ok(answer) => {
            let body = answer.encode();
            let (mac, _) = seal(&authority.keys, Purpose::CheckAnswer, &[&tag, &body]);
            respond_bytes(request, 200, body, vec![(MAC_HEADER, mac)]);
            true
        }
        Err(crate::sessions::CheckError::Stale) => {
            error(
                request,
                400,
                "stale_request",
                "nowMs is too far from the collector's clock",
            );
            true
        }
        Err(crate::sessions::CheckError::Store(e)) => {
            eprintln!("hipaa-collector: session check failed: {e}");
            error(
                request,
                503,
                "store_unavailable",
                "the session check failed",
            );
            false
        }
    }
}

/// `GET /v1/revocations` (the filters; conditional with `If-None-Match`).
fn get_revocations(shared: &Shared, store: &mut dyn Store, request: Request) -> bool {
    use hipaa_core::authn::authority::wire::{
        open, seal, Purpose, MAC_HEADER, MAX_CLOCK_SKEW_MS, TIME_HEADER,
    };
    let Some(authority) = shared.config.sessions.as_ref() else {
        return authority_off(request);
    };
    let time = header_bytes(&request, TIME_HEADER).unwrap_or_default();
    let mac = header_bytes(&request, MAC_HEADER);
    let Ok(tag) = open(
        &authority.keys,
        Purpose::RevocationsRequest,
        mac.as_deref(),
        &[&time],
    ) else {
        error(
            request,
            401,
            "unauthorized",
            "the call is not signed with the session-authority key",
        );
        return true;
    };
    let now = (shared.collector.clock)();
    let fresh = std::str::from_utf8(&time)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| now.saturating_sub(t).abs() <= MAX_CLOCK_SKEW_MS);
    if !fresh {
        error(
            request,
            400,
            "stale_request",
            "x-hipaa-session-time is missing or too far from the collector's clock",
        );
        return true;
    }
    let (body, etag) = match crate::sessions::revocation_list(store, now) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("hipaa-collector: reading revocations failed: {e}");
            error(request, 503, "store_unavailable", "revocations unavailable");
            return false;
        }
    };
    let unchanged = header_bytes(&request, "if-none-match").is_some_and(|v| v == etag.as_bytes());
    let (status, body): (u16, Vec<u8>) = if unchanged {
        (304, Vec::new())
    } else {
        (200, body)
    };
    let status_text = status.to_string();
    let (mac, _) = seal(
        &authority.keys,
        Purpose::RevocationsAnswer,
        &[&tag, status_text.as_bytes(), etag.as_bytes(), &body],
    );
    respond_bytes(
        request,
        status,
        body,
        vec![("etag", etag), (MAC_HEADER, mac)],
    );
    true
}

/// `POST /v1/sessions/revoke` (an operator: the reader credential).
fn post_revoke(
    shared: &Shared,
    store: &mut dyn Store,
    reader: &Reader,
    mut request: Request,
) -> bool {
    use crate::revocation_record::{parse, revoke, RevokeError, MAX_REVOKE_BODY};
    let Some(authority) = shared.config.sessions.as_ref() else {
        return authority_off(request);
    };
    let body = match read_body(&mut request, MAX_REVOKE_BODY) {
        Ok(b) => b,
        Err((status, code)) => {
            error(request, status, code, "the body is too large or unreadable");
            return true;
        }
    };
    let now = (shared.collector.clock)();
    let result = parse(&body, now, authority.revocation_ttl_seconds).and_then(|(r, reason)| {
        revoke(
            store,
            &shared.collector.encryption,
            &r,
            reason.as_deref(),
            reader,
        )
        .map(|seq| (r, seq))
    });
    match result {
        Ok((r, seq)) => {
            respond(request, 200, &json!({"revoked": r, "ledgerSeq": seq}), None);
            true
        }
        Err(RevokeError::Bad(why)) => {
            error(request, 400, "bad_request", why);
            true
        }
        Err(RevokeError::TooMany) => {
            error(
                request,
                409,
                "too_many_revocations",
                "the most revocations in force at once are already in force; end access at the identity provider",
            );
            true
        }
        Err(RevokeError::Store(e)) => {
            eprintln!("hipaa-collector: revocation failed: {e}");
            error(
                request,
                503,
                "store_unavailable",
                "the revocation was not put in force; retry",
            );
            false
        }
    }
}

/// `GET /v1/sessions/revoked` (an operator): the revocations in force; the read is recorded.
fn get_revoked(shared: &Shared, store: &mut dyn Store, reader: &Reader, request: Request) -> bool {
    let now = (shared.collector.clock)();
    let list = match store.revocations(now) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hipaa-collector: reading revocations failed: {e}");
            error(request, 503, "store_unavailable", "revocations unavailable");
            return false;
        }
    };
    if !record_read(
        shared,
        store,
        reader,
        "GET /v1/sessions/revoked",
        "",
        list.len() as u64,
    ) {
        error(request, 503, "store_unavailable", "revocations unavailable");
        return false;
    }
    let items: Vec<Value> = list
        .into_iter()
        .map(|r| {
            json!({
                "ledgerSeq": r.ledger_seq,
                "target": r.target,
                "value": r.value,
                "issuer": r.issuer,
                "revokedAtMs": r.revoked_at_ms,
                "expiresAtMs": r.expires_at_ms,
            })
        })
        .collect();
    respond(request, 200, &json!({"revocations": items}), None);
    true
}

/// One call of the incidents family (`crate::incidents::api`): the reader's credential, the
/// body (at most `api::MAX_BODY`), the family's answer, the trail-access record, the response.
fn incidents_call(shared: &Shared, store: &mut dyn Store, mut request: Request) -> bool {
    use crate::incidents::api;
    let reader = match authorize(shared, &request) {
        Ok(r) => r,
        Err(refusal) => {
            refuse(request, refusal);
            return true;
        }
    };
    let body = match read_body(&mut request, api::MAX_BODY) {
        Ok(body) => body,
        Err((413, code)) => {
            error(request, 413, code, "body exceeds the limit");
            return true;
        }
        Err((status, code)) => {
            error(request, status, code, "cannot read the body");
            return true;
        }
    };
    let url = request.url().to_string();
    let (path, qs) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method = request.method().as_str().to_string();
    let now = (shared.collector.clock)();
    let call = api::Call {
        method: &method,
        path,
        query: qs,
        body: &body,
        reader: &reader,
        now_ms: now,
    };
    let answer = api::handle(store, &shared.collector.encryption, &call);
    if answer.store_failed {
        error(
            request,
            503,
            "store_unavailable",
            "the audit database failed; retry",
        );
        return false;
    }
    let endpoint = if answer.endpoint.is_empty() {
        format!("{method} {}", api::PREFIX)
    } else {
        answer.endpoint.clone()
    };
    if !record_read(
        shared,
        store,
        &reader,
        &endpoint,
        &answer.filter,
        answer.rows,
    ) {
        error(
            request,
            503,
            "store_unavailable",
            "the call could not be recorded",
        );
        return false;
    }
    respond(request, answer.status, &answer.body, None);
    true
}
