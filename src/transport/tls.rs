//! Built-in TLS: the accept loop terminates TLS itself (rustls), so `wss://` and `https://`
//! need no TLS-terminating proxy and nobody between client and server holds a key.
//!
//! The certificate and key live behind a resolver ([`Reloadable`]) that every handshake asks
//! for the current pair; [`TlsConfig::reload`] swaps in a new pair for new connections, while
//! connections already established keep the session they negotiated. The accept loop polls
//! the files' modification times ([`TlsConfig::reload_interval`]) and reloads when either
//! changes; the `sealwire` binary also reloads on SIGHUP. A reload that fails keeps the
//! previous pair and logs an error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Built-in TLS for the listener: a PEM certificate chain and its private key, loaded from
/// files and reloadable while the server runs.
///
/// Cloning is cheap, and clones share the loaded pair: [`TlsConfig::reload`] on any clone
/// changes the certificate every clone serves.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
    reload_interval: Option<Duration>,
}

struct Inner {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Reloadable>,
    /// Modification times of the files when they were last read, taken before reading them.
    read_at: Mutex<Mtimes>,
}

/// Modification times of the certificate and key files (`None`: unavailable).
type Mtimes = (Option<SystemTime>, Option<SystemTime>);

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: never the key.
        f.debug_struct("TlsConfig")
            .field("cert_path", &self.inner.cert_path)
            .field("key_path", &self.inner.key_path)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

/// Default interval at which the accept loop checks the files for changes.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

impl TlsConfig {
    /// Loads a PEM certificate chain (end-entity certificate first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// An I/O error naming the file when it cannot be read, holds no certificate or key, or
    /// when the key does not belong to the certificate.
    pub fn load(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> io::Result<Self> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let read_at = mtimes(&cert_path, &key_path);
        let key = load_pair(&cert_path, &key_path, &provider)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cert_path,
                key_path,
                provider,
                resolver: Arc::new(Reloadable(RwLock::new(Arc::new(key)))),
                read_at: Mutex::new(read_at),
            }),
            reload_interval: Some(DEFAULT_TLS_RELOAD_INTERVAL),
        })
    }

    /// How often the accept loop checks the files' modification times and reloads when one
    /// has changed; `None` turns the check off (reload with [`TlsConfig::reload`] only).
    /// Defaults to [`DEFAULT_TLS_RELOAD_INTERVAL`].
    #[must_use]
    pub fn reload_interval(mut self, interval: Option<Duration>) -> Self {
        self.reload_interval = interval;
        self
    }

    /// The certificate chain file.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert_path
    }

    /// The private key file.
    pub fn key_path(&self) -> &Path {
        &self.inner.key_path
    }

    /// Loads the files again; new connections get the new pair, established ones keep theirs.
    ///
    /// # Errors
    /// As [`TlsConfig::load`]; the previous pair then stays in use.
    pub fn reload(&self) -> io::Result<()> {
        // Before reading: a change while reading is then seen by the next check.
        *self
            .inner
            .read_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.mtimes();
        let key = load_pair(
            &self.inner.cert_path,
            &self.inner.key_path,
            &self.inner.provider,
        )?;
        self.inner.resolver.set(Arc::new(key));
        Ok(())
    }

    /// [`TlsConfig::reload`], logging the outcome (an error keeps the previous pair).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.inner.cert_path.display(), "TLS certificate reloaded")
            }
            Err(e) => tracing::error!(
                error = %e,
                "TLS reload failed; still serving the previous certificate"
            ),
        }
    }

    /// The rustls acceptor of the accept loop: TLS 1.2 and 1.3 (rustls' safe defaults), ALPN
    /// `http/1.1`, no client certificates, the certificate from the shared resolver.
    pub(super) fn acceptor(&self) -> io::Result<tokio_rustls::TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(
            &self.inner.provider,
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&self.inner.resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads whenever the modification time of either file changes, until `stop`. Nothing
    /// when the check is off.
    pub(super) async fn watch(self, stop: CancellationToken) {
        let Some(interval) = self.reload_interval else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let read_at = *self
                .inner
                .read_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A failed reload is not retried until a file changes again.
            if self.mtimes() != read_at {
                self.reload_logged();
            }
        }
    }

    fn mtimes(&self) -> Mtimes {
        mtimes(&self.inner.cert_path, &self.inner.key_path)
    }
}

fn mtimes(cert_path: &Path, key_path: &Path) -> Mtimes {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert_path), modified(key_path))
}

/// Reads and checks a certificate chain and its key.
fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> io::Result<CertifiedKey> {
    let cert_pem = read(cert_path, "certificate")?;
    let key_pem = zeroize::Zeroizing::new(read(key_path, "key")?);
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(format!(
                "TLS certificate file {}: {}",
                cert_path.display(),
                pem_error(&e, "certificate")
            ))
        })?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "TLS certificate file {}: no PEM certificate found",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(format!(
            "TLS key file {}: {}",
            key_path.display(),
            pem_error(&e, "private key")
        ))
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => invalid(format!(
            "TLS key {} does not fit certificate {}: {e}",
            key_path.display(),
            cert_path.display()
        )),
        // The certificate itself could not be read to compare it with the key.
        other => {
            let why = other.to_string();
            let hint = if why.contains("UnsupportedCertVersion") {
                " (not an X.509 v3 certificate: make it with v3 extensions, as `openssl req -x509` does)"
            } else {
                ""
            };
            invalid(format!(
                "TLS certificate file {}: cannot be used: {why}{hint}",
                cert_path.display()
            ))
        }
    })
}

/// What a PEM error means for a file that should hold a `what`.
fn pem_error(e: &rustls_pki_types::pem::Error, what: &str) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => {
            "malformed PEM: a section has no END line (a truncated file?)".to_owned()
        }
        Error::IllegalSectionStart { .. } => "malformed PEM: an invalid BEGIN line".to_owned(),
        Error::Base64Decode(_) => "malformed PEM: a section is not valid base64".to_owned(),
        Error::NoItemsFound => format!(
            "no {what} found (PEM: a certificate, or a PKCS#8, PKCS#1 or SEC1 key; an encrypted key is not supported)"
        ),
        other => other.to_string(),
    }
}

fn read(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read TLS {what} file {}: {e}", path.display()),
        )
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The certificate resolver: the current pair, swapped by a reload.
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl Reloadable {
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}
