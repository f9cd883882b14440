//! Logging to stderr: text or JSON lines, at the level `RUST_LOG` sets (default `info`), with
//! the dependencies capped at `info`.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::args::LogFormat;

/// Installs the process's logger.
pub(crate) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(dependencies_at_info())
            .init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(false)
            .finish()
            .with(dependencies_at_info())
            .init(),
    }
}

/// Caps the dependencies' logs at `info`, whatever `RUST_LOG` asks: at `debug` and `trace`
/// the WebSocket and Socket.IO libraries log whole frames and handshake payloads (a
/// compatibility client's bearer token, plaintext messages). sealwire's own targets keep every
/// level; they never log a token, key or payload.
fn dependencies_at_info<S: tracing::Subscriber>() -> impl tracing_subscriber::Layer<S> {
    tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || meta.target().starts_with("sealwire")
    })
}
