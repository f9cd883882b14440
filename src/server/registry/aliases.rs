//! Other names of clients. A Socket.IO socket has the `socket.id` its client sees (and may
//! tell its backend, as IGNIS apps do) next to its sealwire client id: as an alias, that name
//! reaches the same client wherever a client id does (sends to a client, the admin API's
//! client calls, `send()` routing), and the client is in the room of that name, which
//! `@socket.io/redis-emitter`'s `to(socket.id)` addresses. Like the room of its id, that room
//! is the client's alone: nobody else joins it here, and the client cannot leave it.

use std::sync::Arc;

use super::{Interest, Registry};
use crate::protocol::BusTarget;

impl Registry {
    /// Gives the client `id` the other name `alias`, and puts it in the room of that name.
    /// Refused (nothing changes) for an unknown client, a client that has an alias already,
    /// or a name in use here: a client id, an alias, or a room with members.
    #[cfg_attr(not(feature = "socketio"), allow(dead_code))] // only the Socket.IO door names one
    pub(crate) fn add_alias(&mut self, id: &str, alias: &str, out: &mut Vec<Interest>) -> bool {
        if self.clients.contains_key(alias)
            || self.aliases.contains_key(alias)
            || self.rooms.get(alias).is_some_and(|m| !m.is_empty())
        {
            return false;
        }
        let Some(entry) = self.clients.get_mut(id) else {
            return false;
        };
        if entry.alias.is_some() {
            return false;
        }
        let name: Arc<str> = Arc::from(alias);
        entry.alias = Some(Arc::clone(&name));
        self.aliases.insert(name, Arc::clone(&entry.handle.id));
        self.recipients.clear();
        out.push(Interest::Gained(BusTarget::Client(alias.to_owned())));
        self.join_one(id, alias, usize::MAX, out);
        true
    }

    /// The client id `name` stands for: itself for a client id, the client of an alias.
    pub(crate) fn canonical(&self, name: &str) -> Option<Arc<str>> {
        match self.clients.get_key_value(name) {
            Some((id, _)) => Some(Arc::clone(id)),
            None => self.aliases.get(name).cloned(),
        }
    }

    /// Forgets a removed client's alias (its room goes with the client's other rooms).
    pub(super) fn drop_alias(&mut self, alias: Option<&str>, out: &mut Vec<Interest>) {
        if let Some(alias) = alias {
            self.aliases.remove(alias);
            out.push(Interest::Lost(BusTarget::Client(alias.to_owned())));
        }
    }
}
