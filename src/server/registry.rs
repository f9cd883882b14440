//! The indexes of one server: clients, users and rooms.
//!
//! They live behind one `std::sync::Mutex` and are updated together so they can never
//! disagree. The lock is never held across an `.await`: callers take the recipients (a shared
//! list, [`recipients`]), drop the lock, then queue messages. A std mutex is the right tool here because every critical section
//! is short and CPU-bound (see mini-redis's `db.rs` for the same reasoning).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::hooks::ClientInfo;
use super::outbox::ClientHandle;
use crate::protocol::{BusTarget, RoomName};

mod aliases;
mod recipients;

use recipients::RecipientCache;
pub(crate) use recipients::RoomSnapshot;

/// Longest room name accepted.
pub const MAX_ROOM_NAME: usize = crate::protocol::MAX_NAME_CHARS;

/// Whether `name` may be used as a room: 1..=256 characters, not starting with `ws:`
/// ([`RoomName::check`]).
#[must_use]
pub fn valid_room_name(name: &str) -> bool {
    RoomName::check(name).is_ok()
}

/// Whether `name` has the shape of a client id: anything [`uuid::Uuid::try_parse`] accepts
/// (client ids are lowercase hyphenated v4 UUIDs; the other spellings are reserved as well).
///
/// Every client is in the room named after its own id, and `send()` routes a destination
/// that is not a local client id to the room of that name, so such rooms belong to the
/// client whose id they carry: nobody can join one ([`joinable_room_name`]).
#[must_use]
pub fn is_client_id_shaped(name: &str) -> bool {
    crate::protocol::is_client_id_shaped(name)
}

/// Whether a client (through its room validator), the application ([`Server::join`]) or the
/// admin API may join `name`: a [valid room name](valid_room_name) that is not
/// [shaped like a client id](is_client_id_shaped) ([`RoomName::check_joinable`]). Only the
/// server itself puts a client in the room of its own id, when it authenticates.
///
/// [`Server::join`]: super::Server::join
#[must_use]
pub fn joinable_room_name(name: &str) -> bool {
    RoomName::check_joinable(name).is_ok()
}

/// Lifecycle state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Connected, no `authenticate` yet.
    Unauthorized,
    /// `authenticate` received, hook or handshake running.
    Authenticating,
    /// Authenticated; receives messages.
    Authenticated,
    /// Gone.
    Disconnected,
}

impl ClientState {
    /// Lower-case wire name (`unauthorized`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Authenticating => "authenticating",
            Self::Authenticated => "authenticated",
            Self::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug)]
struct Entry {
    handle: Arc<ClientHandle>,
    state: ClientState,
    info: Option<Arc<ClientInfo>>,
    rooms: HashSet<String>,
    /// The client's other name, if it has one ([`Registry::add_alias`]).
    alias: Option<Arc<str>>,
}

/// A bus subscription the server gained or lost an interest in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// This server now has a local member for the target.
    Gained(BusTarget),
    /// This server no longer has any local member for the target.
    Lost(BusTarget),
}

/// What [`Registry::join_one`] did: joined, was a member already, or the client is at its
/// room limit (or unknown).
enum Joined {
    Yes,
    Already,
    Full,
}

/// A snapshot of one client for the admin API.
#[derive(Debug, Clone)]
pub struct ClientSnapshot {
    /// Client id.
    pub id: String,
    /// User id, once authenticated.
    pub user_id: Option<String>,
    /// Lifecycle state.
    pub state: ClientState,
    /// Whether the client is encrypted.
    pub encrypted: bool,
    /// Rooms, sorted.
    pub rooms: Vec<String>,
    /// The client's other name, if it has one: a Socket.IO socket's `socket.id`.
    pub alias: Option<String>,
}

/// Counts for the admin API and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Open connections.
    pub clients: usize,
    /// Authenticated connections.
    pub authenticated: usize,
    /// Encrypted connections.
    pub encrypted: usize,
    /// Distinct users.
    pub users: usize,
    /// Non-empty rooms.
    pub rooms: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    clients: HashMap<Arc<str>, Entry>,
    users: HashMap<String, HashSet<Arc<str>>>,
    rooms: HashMap<String, HashSet<Arc<str>>>,
    /// Other names of clients (a Socket.IO socket's `socket.id`), each to its client id.
    aliases: HashMap<Arc<str>, Arc<str>>,
    /// Per non-empty room, the value of `clock` at its last membership change (room keys
    /// start a new epoch when it moves: [`super::room_keys`]).
    generations: HashMap<String, u64>,
    /// Counts membership changes; never goes back, so a room that empties and fills again
    /// gets a generation it never had.
    clock: u64,
    authenticated: usize,
    encrypted: usize,
    /// The recipients of the last target fanned out to. Every change to who receives what
    /// (a state, a membership) must clear it.
    recipients: RecipientCache,
}

impl Registry {
    pub(crate) fn insert(&mut self, handle: Arc<ClientHandle>) {
        self.clients.insert(
            Arc::clone(&handle.id),
            Entry {
                handle,
                state: ClientState::Unauthorized,
                info: None,
                rooms: HashSet::new(),
                alias: None,
            },
        );
    }

    pub(crate) fn set_state(&mut self, id: &str, state: ClientState) {
        if let Some(e) = self.clients.get_mut(id) {
            e.state = state;
            self.recipients.clear();
        }
    }

    /// Marks a client authenticated, indexes it by user and joins `rooms`.
    pub(crate) fn authenticate(
        &mut self,
        id: &str,
        info: Arc<ClientInfo>,
        rooms: &[String],
        out: &mut Vec<Interest>,
    ) {
        let Some(entry) = self.clients.get_mut(id) else {
            return;
        };
        let key = Arc::clone(&entry.handle.id);
        entry.state = ClientState::Authenticated;
        self.recipients.clear();
        self.authenticated += 1;
        if info.encrypted {
            self.encrypted += 1;
        }
        let user = self.users.entry(info.user_id.clone()).or_default();
        if user.is_empty() {
            out.push(Interest::Gained(BusTarget::User(info.user_id.clone())));
        }
        user.insert(Arc::clone(&key));
        out.push(Interest::Gained(BusTarget::Client(String::from(&*key))));
        entry.info = Some(info);
        for room in rooms {
            self.join_one(id, room, usize::MAX, out);
        }
    }

    /// Replaces an authenticated client's info (a refresh: same user, new metadata/expiry).
    pub(crate) fn update_info(&mut self, id: &str, info: Arc<ClientInfo>) {
        if let Some(entry) = self.clients.get_mut(id)
            && entry
                .info
                .as_ref()
                .is_some_and(|old| old.user_id == info.user_id)
        {
            entry.info = Some(info);
        }
    }

    /// Joins rooms, up to `max_rooms` in total; returns the rooms newly joined.
    pub(crate) fn join(
        &mut self,
        id: &str,
        rooms: impl IntoIterator<Item = String>,
        max_rooms: usize,
        out: &mut Vec<Interest>,
    ) -> Vec<String> {
        let mut joined = Vec::new();
        for room in rooms {
            match self.join_one(id, &room, max_rooms, out) {
                Joined::Yes => joined.push(room),
                Joined::Already => {}
                Joined::Full => break,
            }
        }
        joined
    }

    /// Joins one room (at most `max_rooms` in total). The room's name is copied only where
    /// it is stored: a room or generation already indexed keeps its key, and the caller keeps
    /// `room` (authentication joins without collecting what was joined).
    fn join_one(
        &mut self,
        id: &str,
        room: &str,
        max_rooms: usize,
        out: &mut Vec<Interest>,
    ) -> Joined {
        // The room of another client's alias is that client's alone.
        if self.aliases.get(room).is_some_and(|owner| &**owner != id) {
            return Joined::Already;
        }
        let Some(entry) = self.clients.get_mut(id) else {
            return Joined::Full;
        };
        if entry.rooms.len() >= max_rooms {
            return Joined::Full;
        }
        if entry.rooms.contains(room) {
            return Joined::Already;
        }
        let member = Arc::clone(&entry.handle.id);
        entry.rooms.insert(room.to_owned());
        self.recipients.clear();
        match self.rooms.get_mut(room) {
            Some(members) if !members.is_empty() => {
                members.insert(member);
            }
            _ => {
                out.push(Interest::Gained(BusTarget::Room(room.to_owned())));
                self.rooms
                    .entry(room.to_owned())
                    .or_default()
                    .insert(member);
            }
        }
        self.clock += 1;
        match self.generations.get_mut(room) {
            Some(generation) => *generation = self.clock,
            None => {
                self.generations.insert(room.to_owned(), self.clock);
            }
        }
        Joined::Yes
    }

    /// Leaves rooms the client is in; returns the rooms left.
    pub(crate) fn leave(
        &mut self,
        id: &str,
        rooms: impl IntoIterator<Item = String>,
        out: &mut Vec<Interest>,
    ) -> Vec<String> {
        let Some(entry) = self.clients.get_mut(id) else {
            return Vec::new();
        };
        let mut left = Vec::new();
        for room in rooms {
            // A client stays in the room of its alias, as in the room of its id.
            if entry.alias.as_deref() == Some(room.as_str()) || !entry.rooms.remove(&room) {
                continue;
            }
            self.recipients.clear();
            self.clock += 1;
            room_left(
                &mut self.rooms,
                &mut self.generations,
                self.clock,
                &room,
                id,
                out,
            );
            left.push(room);
        }
        left
    }

    /// Removes a client from every index; returns its info if it was authenticated.
    pub(crate) fn remove(&mut self, id: &str, out: &mut Vec<Interest>) -> Option<Arc<ClientInfo>> {
        let entry = self.clients.remove(id)?;
        self.recipients.clear();
        self.drop_alias(entry.alias.as_deref(), out);
        for room in &entry.rooms {
            self.clock += 1;
            room_left(
                &mut self.rooms,
                &mut self.generations,
                self.clock,
                room,
                id,
                out,
            );
        }
        let info = entry.info?;
        self.authenticated -= 1;
        if info.encrypted {
            self.encrypted -= 1;
        }
        remove_member(&mut self.users, &info.user_id, id, |u| {
            out.push(Interest::Lost(BusTarget::User(u.to_owned())));
        });
        out.push(Interest::Lost(BusTarget::Client(id.to_owned())));
        Some(info)
    }

    /// Whether `id` is a client here, by its id or its alias.
    pub(crate) fn has_client(&self, id: &str) -> bool {
        self.clients.contains_key(id) || self.aliases.contains_key(id)
    }

    pub(crate) fn info(&self, id: &str) -> Option<Arc<ClientInfo>> {
        self.clients.get(id).and_then(|e| e.info.clone())
    }

    pub(crate) fn rooms_of(&self, id: &str) -> Option<Vec<String>> {
        let e = self.clients.get(id)?;
        let mut rooms: Vec<String> = e.rooms.iter().cloned().collect();
        rooms.sort();
        Some(rooms)
    }

    pub(crate) fn handles(&self) -> Vec<Arc<ClientHandle>> {
        self.clients
            .values()
            .map(|e| Arc::clone(&e.handle))
            .collect()
    }

    /// Every client's handle, and whether it is authenticated.
    pub(crate) fn handles_with_state(&self) -> Vec<(Arc<ClientHandle>, bool)> {
        self.clients
            .values()
            .map(|e| (Arc::clone(&e.handle), e.state == ClientState::Authenticated))
            .collect()
    }

    pub(crate) fn snapshot(&self) -> Vec<ClientSnapshot> {
        let mut list: Vec<ClientSnapshot> = self
            .clients
            .values()
            .map(|e| {
                let mut rooms: Vec<String> = e.rooms.iter().cloned().collect();
                rooms.sort();
                ClientSnapshot {
                    id: e.handle.id.to_string(),
                    user_id: e.info.as_ref().map(|i| i.user_id.clone()),
                    state: e.state,
                    encrypted: e.info.as_ref().is_some_and(|i| i.encrypted),
                    rooms,
                    alias: e.alias.as_deref().map(str::to_owned),
                }
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            clients: self.clients.len(),
            authenticated: self.authenticated,
            encrypted: self.encrypted,
            users: self.users.len(),
            rooms: self.rooms.len(),
        }
    }

    /// Every target this server currently has a member for (for bus resubscription).
    pub(crate) fn interests(&self) -> Vec<BusTarget> {
        let rooms = self.rooms.keys().map(|r| BusTarget::Room(r.clone()));
        let users = self.users.keys().map(|u| BusTarget::User(u.clone()));
        let clients = self
            .clients
            .values()
            .filter(|e| e.info.is_some())
            .map(|e| BusTarget::Client(e.handle.id.to_string()));
        let aliases = self
            .aliases
            .keys()
            .map(|a| BusTarget::Client(a.to_string()));
        rooms.chain(users).chain(clients).chain(aliases).collect()
    }
}

/// Removes `id` from `room` at generation `clock`; the room's generation goes with it when it
/// empties.
fn room_left(
    rooms: &mut HashMap<String, HashSet<Arc<str>>>,
    generations: &mut HashMap<String, u64>,
    clock: u64,
    room: &str,
    id: &str,
    out: &mut Vec<Interest>,
) {
    generations.insert(room.to_owned(), clock);
    remove_member(rooms, room, id, |r| {
        generations.remove(r);
        out.push(Interest::Lost(BusTarget::Room(r.to_owned())));
    });
}

fn remove_member(
    index: &mut HashMap<String, HashSet<Arc<str>>>,
    key: &str,
    id: &str,
    on_empty: impl FnOnce(&str),
) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
            on_empty(key);
        }
    }
}

#[cfg(test)]
mod tests;
