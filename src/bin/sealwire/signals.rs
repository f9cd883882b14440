//! Shutdown signals: the first starts a graceful shutdown, a second ends the process.

/// The first SIGTERM or SIGINT starts the graceful shutdown (and its drain); a second one
/// ends the process at once, for an operator who cannot wait for a long drain.
pub(crate) async fn shutdown_signal() {
    // Listening from the start: a second signal that comes right after the first is not lost.
    let mut signals = Signals::new();
    signals.next().await;
    tracing::info!("shutdown signal received");
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second shutdown signal: stopping now, without waiting for the drain");
        std::process::exit(130);
    });
}

/// SIGTERM and SIGINT.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes at the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.term) => {}
                () = recv(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
