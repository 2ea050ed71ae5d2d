//! TLS for the harness: one test PKI per test process (`scripts/dev-certs.sh`: a CA and a
//! workload certificate for localhost / 127.0.0.1 carrying a SPIFFE id, used by Envoy as its
//! server certificate and by the client as its certificate), and a client connection
//! (rustls, the same crate and features the CLI's HTTPS client already builds) that
//! [`crate::http`] uses for the listener ports registered as TLS.
//!
//! [`Conn`] can be cloned (`try_clone`) so one thread writes a body while another reads the
//! answer, as over a plain socket: the TLS state is shared under a lock that is never held
//! across a blocking socket read.

use crate::root;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The SPIFFE id in the client (and server) certificate of the test PKI.
pub const CLIENT_SPIFFE_ID: &str = "spiffe://cluster.local/ns/e2e/sa/client";

/// The test PKI's files, made once per test process.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The workload certificate: Envoy's server certificate and the client's certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("workload.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("workload-key.pem")
    }
}

/// The process's test PKI (made on first use; the folder of a finished test process is removed
/// by the next one).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let base = crate::target_dir().join("e2e-tmp");
        remove_stale(&base);
        let dir = base.join(format!("pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new(root().join("scripts/dev-certs.sh"))
            .arg(&dir)
            .arg(CLIENT_SPIFFE_ID)
            .output()
            .expect("scripts/dev-certs.sh (openssl) is needed for the TLS harness");
        assert!(
            out.status.success(),
            "dev-certs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { dir }
    })
}

/// `pki-PID` folders of test processes that are gone.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("pki-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The downstream TLS context for a listener: the test PKI's certificate, client certificates
/// asked for and validated against the test CA but not required (so the filter, not the
/// listener, is the one that refuses a missing one).
pub fn downstream_tls_context() -> serde_json::Value {
    let pki = pki();
    serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": false,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": pki.cert().display().to_string()},
                    "private_key": {"filename": pki.key().display().to_string()}
                }],
                "validation_context": {
                    "trusted_ca": {"filename": pki.ca().display().to_string()}
                }
            }
        }
    })
}

/// How the client talks to a registered port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// TLS with the test PKI's client certificate (mTLS).
    Mtls,
    /// TLS without a client certificate.
    Tls,
}

fn config(client: Client) -> Arc<ClientConfig> {
    static CONFIGS: OnceLock<(Arc<ClientConfig>, Arc<ClientConfig>)> = OnceLock::new();
    let (mtls, tls) = CONFIGS.get_or_init(|| {
        let pki = pki();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(pki.ca()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.cert())
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.key()).unwrap();
        let mut mtls = builder().with_client_auth_cert(chain, key).unwrap();
        mtls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut tls = builder().with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(mtls), Arc::new(tls))
    });
    match client {
        Client::Mtls => mtls.clone(),
        Client::Tls => tls.clone(),
    }
}

fn registry() -> &'static Mutex<HashMap<u16, Client>> {
    static PORTS: OnceLock<Mutex<HashMap<u16, Client>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// From now on the request helpers speak TLS to `port` (an Envoy listener with
/// [`downstream_tls_context`]).
pub fn register(port: u16, client: Client) {
    registry().lock().unwrap().insert(port, client);
}

pub fn unregister(port: u16) {
    registry().lock().unwrap().remove(&port);
}

/// How the helpers talk to `port`: None for plaintext.
pub fn client_for(port: u16) -> Option<Client> {
    registry().lock().unwrap().get(&port).copied()
}

/// A connection to a loopback port: plaintext, or TLS when the port is registered.
pub struct Conn {
    sock: TcpStream,
    tls: Option<Arc<Mutex<ClientConnection>>>,
}

impl Conn {
    /// Connect to `port` on 127.0.0.1 as [`client_for`] says (the TLS handshake is complete
    /// when this returns).
    pub fn connect(port: u16) -> io::Result<Conn> {
        match client_for(port) {
            None => Ok(Conn {
                sock: TcpStream::connect(("127.0.0.1", port))?,
                tls: None,
            }),
            Some(client) => Conn::connect_tls(port, client),
        }
    }

    /// Connect with TLS whatever the registry says.
    pub fn connect_tls(port: u16, client: Client) -> io::Result<Conn> {
        let mut sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(20)))?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config(client), name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(Conn {
            sock,
            tls: Some(Arc::new(Mutex::new(conn))),
        })
    }

    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(Conn {
            sock: self.sock.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(t)
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.sock.read(buf);
        };
        let mut raw = [0u8; 16 * 1024];
        loop {
            {
                let mut conn = tls.lock().unwrap();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed the TCP connection without close_notify: the end of the
                    // answer, as over plaintext (a truncated answer fails to parse).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            // No lock while blocked on the socket: a writer on a clone can go on.
            let n = self.sock.read(&mut raw)?;
            let mut conn = tls.lock().unwrap();
            let mut data = &raw[..n];
            loop {
                conn.read_tls(&mut data)?;
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if data.is_empty() {
                    break;
                }
            }
            while conn.wants_write() {
                conn.write_tls(&mut self.sock)?;
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.sock.write(buf);
        };
        let mut conn = tls.lock().unwrap();
        let n = conn.writer().write(buf)?;
        while conn.wants_write() {
            conn.write_tls(&mut self.sock)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.tls {
            None => self.sock.flush(),
            Some(_) => Ok(()),
        }
    }
}
