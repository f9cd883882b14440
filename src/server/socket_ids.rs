//! Socket.IO `socket.id`s: names of their clients that are also rooms only those clients are
//! in. The door reserves each on every instance before it tells the socket its id, and gives
//! it up when the socket leaves (the bus then keeps it retired for a while, so that sends to a
//! departed socket's id reach nobody); before a client or the admin API joins a room of that
//! shape, the server asks the bus whether some client holds the name.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::Server;

/// The longest a Socket.IO connect waits for its `socket.id` to be reserved on every instance.
const RESERVE_WITHIN: Duration = Duration::from_secs(2);

impl Server {
    /// Reserves a Socket.IO socket's `socket.id` on every instance ([`Bus::reserve_name`]),
    /// waiting at most [`RESERVE_WITHIN`]: a bus that cannot take it now writes it when it
    /// can, and meanwhile other instances refuse socket-id shaped joins anyway (their check
    /// fails too).
    ///
    /// [`Bus::reserve_name`]: super::Bus::reserve_name
    #[cfg_attr(not(feature = "socketio"), allow(dead_code))] // only the Socket.IO door names one
    pub(crate) fn reserve_socket_id(
        &self,
        sid: &str,
    ) -> impl std::future::Future<Output = ()> + Send + use<> {
        let (bus, sid) = (Arc::clone(&self.0.bus), sid.to_owned());
        async move {
            match tokio::time::timeout(RESERVE_WITHIN, bus.reserve_name(&sid)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "socket id not reserved yet"),
                Err(_) => tracing::debug!("socket id not reserved in time"),
            }
        }
    }

    /// Gives up a socket's `socket.id` ([`Self::reserve_socket_id`]): the socket is gone.
    #[cfg_attr(not(feature = "socketio"), allow(dead_code))]
    pub(crate) fn release_socket_id(&self, sid: &str) {
        self.0.bus.release_name(sid);
    }

    /// The names of `rooms` that a client holds as a name of its own on any instance (a
    /// Socket.IO `socket.id`, whose room is that client's alone), as the bus reports them
    /// ([`Bus::names_in_use`](super::Bus::names_in_use)); every socket-id shaped name when the
    /// bus cannot answer. Names of other shapes are never held.
    pub(crate) async fn names_in_use(&self, rooms: &[String]) -> HashSet<String> {
        let asked: Vec<String> = rooms
            .iter()
            .filter(|r| crate::protocol::is_socket_id_shaped(r))
            .cloned()
            .collect();
        if asked.is_empty() {
            return HashSet::new();
        }
        match self.0.bus.names_in_use(asked.clone()).await {
            Ok(in_use) => in_use,
            Err(e) => {
                tracing::debug!(error = %e, "socket-id shaped room names refused: the bus cannot say whose they are");
                asked.into_iter().collect()
            }
        }
    }
}
