//! Connecting to Redis: opening a client for a `redis://`/`rediss://` URL (with a custom CA
//! for TLS), publisher and subscriber connections with timeouts, redacting credentials for
//! logs, and recognising refused credentials (password or ACL).

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};

/// `redis://user:secret@host` -> `redis://***@host`, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

pub(super) fn conn_config(connect: Duration, response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
}

/// Opens a Redis client for `url`, making sure rustls has a crypto provider for `rediss://`.
/// `ca_pem`, when given, replaces the bundled web roots as the trusted CA(s).
pub(crate) fn open_client(url: &str, ca_pem: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss://") {
        // Fails only when a provider is already installed, which is what we need anyway.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    match ca_pem {
        Some(pem) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        _ => redis::Client::open(url),
    }
}

/// Opens a multiplexed connection for publishing (also used by the emitter).
pub(crate) async fn connect_publisher(
    client: &redis::Client,
    connect: Duration,
    response: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = conn_config(connect, response);
    let fut = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // A connection is not an answer: a hung Redis (stopped, or behind a dead path)
        // still completes the TCP handshake, and one that wants a password accepts the
        // connection and refuses the first command (NOAUTH).
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    };
    match tokio::time::timeout(connect + response, fut).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

pub(super) async fn connect_subscriber(
    client: &redis::Client,
    connect: Duration,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    match tokio::time::timeout(connect, client.get_async_pubsub()).await {
        Ok(r) => r.map(redis::aio::PubSub::split),
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

pub(super) async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Whether Redis refused the URL's credentials (wrong or missing password, or an ACL user
/// without the commands the bus needs): an error that retrying with the same URL cannot fix.
pub(super) fn refused_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Whether Redis refused the URL's database number (`SELECT` out of range): a configuration
/// error too.
pub(super) fn refused_database(e: &redis::RedisError) -> bool {
    e.to_string().contains("DB index is out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(redact_url("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("rediss://:p@h"), "rediss://***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
