//! A misbehaving collector (or JWKS endpoint) for the fault-injection tests: an HTTP/1.1 proxy
//! on a loopback port in front of a real server, whose behaviour the test switches at run time —
//! pass, slow, hang up before or after forwarding, answer 500, answer garbage — and which counts
//! what it saw. Also a listener that only counts connections (to prove nothing was fetched).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the backend and relay its answer.
    Pass,
    /// Wait this long, then forward and relay.
    Slow(Duration),
    /// Close the connection without an answer, without forwarding.
    Hangup,
    /// Forward (so the backend stores and commits), then close instead of relaying the answer:
    /// the answer is lost after the commit.
    HangupAfterForward,
    /// Answer with this status and a JSON error body, without forwarding.
    Status(u16),
    /// Answer with bytes that are not HTTP, then close, without forwarding.
    Garbage,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub connections: usize,
    pub requests: usize,
    /// Requests whose answer came from the backend and was relayed.
    pub relayed: usize,
    /// Requests that were not relayed an answer from the backend (faults).
    pub faulted: usize,
}

struct State {
    mode: Mode,
    counts: Counts,
}

/// The proxy; its threads live as long as the test process (ports are never reused).
pub struct FaultyProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FaultyProxy {
    pub fn start(backend: u16, mode: Mode) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            mode,
            counts: Counts::default(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                shared.lock().unwrap().counts.connections += 1;
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, backend, &shared));
            }
        });
        FaultyProxy { port, state }
    }

    pub fn set(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts.clone()
    }
}

/// One HTTP/1.1 message read from a stream: the raw bytes (head and body).
fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if complete {
            return Some(raw);
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Close without an answer, the way a collector that crashed mid-request looks to Envoy
/// (std has no stable SO_LINGER for a hard RST; Envoy treats both as a connection reset).
fn hang_up(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
    drop(stream);
}

fn forward(backend: u16, request: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", backend)).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    up.write_all(request).ok()?;
    let answer = read_message(&mut up);
    let _ = up.shutdown(Shutdown::Both);
    answer
}

fn serve(mut stream: TcpStream, backend: u16, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    while let Some(request) = read_message(&mut stream) {
        let mode = {
            let mut s = state.lock().unwrap();
            s.counts.requests += 1;
            s.mode.clone()
        };
        let fault = |state: &Mutex<State>| state.lock().unwrap().counts.faulted += 1;
        match mode {
            Mode::Pass | Mode::Slow(_) => {
                if let Mode::Slow(d) = mode {
                    std::thread::sleep(d);
                }
                match forward(backend, &request) {
                    Some(answer) => {
                        if stream.write_all(&answer).is_err() {
                            fault(state);
                            return;
                        }
                        state.lock().unwrap().counts.relayed += 1;
                    }
                    None => {
                        fault(state);
                        return hang_up(stream);
                    }
                }
            }
            Mode::Hangup => {
                fault(state);
                return hang_up(stream);
            }
            Mode::HangupAfterForward => {
                let _ = forward(backend, &request);
                fault(state);
                return hang_up(stream);
            }
            Mode::Status(code) => {
                fault(state);
                let body = "{\"error\":\"injected\"}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            Mode::Garbage => {
                fault(state);
                let _ = stream.write_all(b"\x00\x01garbage \xff\xfe not http\r\n\r\n");
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// A listener that accepts and counts connections and never answers: the target of `jku` /
/// `x5u` URLs, to show the filters never fetch what a token points at.
pub struct CountingListener {
    pub port: u16,
    connections: Arc<AtomicUsize>,
}

impl CountingListener {
    pub fn start() -> CountingListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        CountingListener { port, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A server that answers every request with 200 and `body` (a JWKS endpoint).
pub fn static_server(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                while read_message(&mut stream).is_some() {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A module for the VM-failure tests only (never part of a hipaa-mesh filter chain outside
/// them): a Proxy-Wasm filter whose `on_request_headers` executes `unreachable` (a trap, as a
/// panic in a filter would) when a request carries more than 30 headers, and otherwise lets the
/// request continue. Assembled at test time with binaryen's `wasm-as` (installed by
/// `make setup` with wasm-opt).
pub const TRAP_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (if (i32.gt_u (local.get $n) (i32.const 30)) (then (unreachable)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
"#;

/// Assemble [`TRAP_WAT`] into `dir`; the module's path.
pub fn trap_module(dir: &std::path::Path) -> std::path::PathBuf {
    let wat = dir.join("trap.wat");
    let wasm = dir.join("trap.wasm");
    std::fs::write(&wat, TRAP_WAT).unwrap();
    let out = std::process::Command::new("wasm-as")
        .arg(&wat)
        .arg("-o")
        .arg(&wasm)
        .output()
        .unwrap_or_else(|e| panic!("wasm-as (binaryen) not found ({e}): run `make setup`"));
    assert!(
        out.status.success(),
        "wasm-as failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wasm
}

/// The inbound listener's HTTP connection manager in a [`crate::envoy::Topology`] config.
pub fn connection_manager(config: &mut serde_json::Value) -> &mut serde_json::Value {
    config
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .unwrap()
}

/// An Envoy started from a configuration the test edited: [`crate::envoy::Envoy::start_edited`].
pub type EditedEnvoy = crate::envoy::Envoy;
