//! The IGNIS helper's `send({destination, payload: {topic, data}})`, on a [`Server`].

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::publish::{Publish, PublishError, Receipt};
use crate::server::Server;

/// IGNIS `send()` routing: no destination broadcasts; a local client id sends to that client;
/// a local room sends to the room; anything else is published as a room for the other
/// instances ([`Server::resolve_destination`]). Always publishes to the bus as well.
///
/// ```no_run
/// use sealwire::compat::IgnisSend;
/// # async fn run(server: sealwire::Server) -> Result<(), sealwire::publish::PublishError> {
/// server.send(Some("merchant:7"), "order:paid", &serde_json::json!({"id": 42})).await?;
/// server.send(None, "maintenance", &"at 02:00 UTC").await?;
/// # Ok(()) }
/// ```
pub trait IgnisSend {
    /// Sends `data` as `topic` to `destination` (a client id or a room), or to everyone.
    ///
    /// # Errors
    /// As [`crate::publish::To::emit`].
    fn send(
        &self,
        destination: Option<&str>,
        topic: &str,
        data: &impl Serialize,
    ) -> BoxFuture<'_, Result<Receipt, PublishError>>;
}

impl IgnisSend for Server {
    fn send(
        &self,
        destination: Option<&str>,
        topic: &str,
        data: &impl Serialize,
    ) -> BoxFuture<'_, Result<Receipt, PublishError>> {
        self.to(self.resolve_destination(destination))
            .emit(topic, data)
    }
}
