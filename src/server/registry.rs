//! The indexes of one server: clients, users and rooms.
//!
//! They live behind one `std::sync::Mutex` and are updated together so they can never
//! disagree. The lock is never held across an `.await`: callers collect recipients, drop the
//! lock, then queue messages. A std mutex is the right tool here because every critical section
//! is short and CPU-bound (see mini-redis's `db.rs` for the same reasoning).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::hooks::ClientInfo;
use super::outbox::ClientHandle;
use crate::protocol::{BusTarget, RoomName};

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
}

/// A bus subscription the server gained or lost an interest in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// This server now has a local member for the target.
    Gained(BusTarget),
    /// This server no longer has any local member for the target.
    Lost(BusTarget),
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
    authenticated: usize,
    encrypted: usize,
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
            },
        );
    }

    pub(crate) fn set_state(&mut self, id: &str, state: ClientState) {
        if let Some(e) = self.clients.get_mut(id) {
            e.state = state;
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
        self.join(id, rooms.iter().cloned(), usize::MAX, out);
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
        let Some(entry) = self.clients.get_mut(id) else {
            return Vec::new();
        };
        let mut joined = Vec::new();
        for room in rooms {
            if entry.rooms.len() >= max_rooms {
                break;
            }
            if entry.rooms.contains(&room) {
                continue;
            }
            let members = self.rooms.entry(room.clone()).or_default();
            if members.is_empty() {
                out.push(Interest::Gained(BusTarget::Room(room.clone())));
            }
            members.insert(Arc::clone(&entry.handle.id));
            entry.rooms.insert(room.clone());
            joined.push(room);
        }
        joined
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
            if !entry.rooms.remove(&room) {
                continue;
            }
            remove_member(&mut self.rooms, &room, id, |r| {
                out.push(Interest::Lost(BusTarget::Room(r.to_owned())));
            });
            left.push(room);
        }
        left
    }

    /// Removes a client from every index; returns its info if it was authenticated.
    pub(crate) fn remove(&mut self, id: &str, out: &mut Vec<Interest>) -> Option<Arc<ClientInfo>> {
        let entry = self.clients.remove(id)?;
        for room in &entry.rooms {
            remove_member(&mut self.rooms, room, id, |r| {
                out.push(Interest::Lost(BusTarget::Room(r.to_owned())));
            });
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

    /// Authenticated recipients of `target`, minus `exclude`.
    pub(crate) fn recipients(
        &self,
        target: &BusTarget,
        exclude: &[String],
    ) -> Vec<Arc<ClientHandle>> {
        let excluded = |id: &str| exclude.iter().any(|e| e == id);
        let pick = |ids: Option<&HashSet<Arc<str>>>| -> Vec<Arc<ClientHandle>> {
            ids.into_iter()
                .flatten()
                .filter(|id| !excluded(id))
                .filter_map(|id| self.authenticated_handle(id))
                .collect()
        };
        match target {
            BusTarget::Broadcast => self
                .clients
                .values()
                .filter(|e| e.state == ClientState::Authenticated && !excluded(&e.handle.id))
                .map(|e| Arc::clone(&e.handle))
                .collect(),
            BusTarget::Room(room) => pick(self.rooms.get(room)),
            BusTarget::User(user) => pick(self.users.get(user)),
            BusTarget::Client(id) => {
                if excluded(id) {
                    Vec::new()
                } else {
                    self.authenticated_handle(id).into_iter().collect()
                }
            }
        }
    }

    fn authenticated_handle(&self, id: &str) -> Option<Arc<ClientHandle>> {
        self.clients
            .get(id)
            .filter(|e| e.state == ClientState::Authenticated)
            .map(|e| Arc::clone(&e.handle))
    }

    pub(crate) fn has_client(&self, id: &str) -> bool {
        self.clients.contains_key(id)
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
        rooms.chain(users).chain(clients).collect()
    }
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
mod tests {
    use super::*;
    use std::time::{Instant, SystemTime};

    fn info(id: &str, user: &str) -> Arc<ClientInfo> {
        Arc::new(ClientInfo {
            id: id.into(),
            user_id: user.into(),
            metadata: serde_json::Value::Null,
            encrypted: false,
            remote_addr: None,
            connected_at: SystemTime::now(),
            expires_at: None,
        })
    }

    fn add(reg: &mut Registry, id: &str) -> Arc<ClientHandle> {
        let h = ClientHandle::new(id.into(), 8, 1 << 20, Instant::now());
        reg.insert(Arc::clone(&h));
        h
    }

    #[test]
    fn indexes_are_pruned_on_remove() {
        let mut reg = Registry::default();
        let mut out = Vec::new();
        let _a = add(&mut reg, "a");
        let _b = add(&mut reg, "b");
        reg.authenticate("a", info("a", "u"), &["r".into(), "a".into()], &mut out);
        reg.authenticate("b", info("b", "u"), &["r".into()], &mut out);
        assert_eq!(reg.counts().users, 1);
        assert_eq!(reg.recipients(&BusTarget::Room("r".into()), &[]).len(), 2);
        assert_eq!(
            reg.recipients(&BusTarget::Room("r".into()), &["a".into()])
                .len(),
            1
        );
        assert_eq!(reg.recipients(&BusTarget::User("u".into()), &[]).len(), 2);
        out.clear();
        reg.remove("a", &mut out);
        assert!(reg.recipients(&BusTarget::Room("a".into()), &[]).is_empty());
        assert!(out.contains(&Interest::Lost(BusTarget::Room("a".into()))));
        assert!(!out.contains(&Interest::Lost(BusTarget::User("u".into()))));
        reg.remove("b", &mut out);
        assert_eq!(reg.counts(), Counts::default());
        assert!(out.contains(&Interest::Lost(BusTarget::User("u".into()))));
    }

    #[test]
    fn unauthenticated_clients_receive_nothing() {
        let mut reg = Registry::default();
        let _a = add(&mut reg, "a");
        assert!(reg.recipients(&BusTarget::Broadcast, &[]).is_empty());
        assert!(
            reg.recipients(&BusTarget::Client("a".into()), &[])
                .is_empty()
        );
    }

    #[test]
    fn join_respects_limit_and_leave_only_joined() {
        let mut reg = Registry::default();
        let mut out = Vec::new();
        let _a = add(&mut reg, "a");
        reg.authenticate("a", info("a", "u"), &[], &mut out);
        let joined = reg.join("a", ["x".into(), "y".into(), "z".into()], 2, &mut out);
        assert_eq!(joined, vec!["x".to_string(), "y".to_string()]);
        let left = reg.leave("a", ["z".into(), "x".into()], &mut out);
        assert_eq!(left, vec!["x".to_string()]);
    }

    #[test]
    fn room_names() {
        assert!(valid_room_name("a"));
        assert!(valid_room_name(&"é".repeat(256)));
        assert!(!valid_room_name(&"a".repeat(257)));
        assert!(!valid_room_name(""));
        assert!(!valid_room_name("ws:internal"));
    }

    #[test]
    fn client_id_shaped_rooms_are_not_joinable() {
        let id = uuid::Uuid::new_v4();
        let hyphenated = id.hyphenated().to_string();
        assert!(valid_room_name(&hyphenated));
        for name in [
            hyphenated.clone(),
            hyphenated.to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ] {
            assert!(is_client_id_shaped(&name), "{name}");
            assert!(!joinable_room_name(&name), "{name}");
        }
        assert!(joinable_room_name("orders:42"));
        assert!(!joinable_room_name("ws:x"));
        assert!(joinable_room_name(&format!("{hyphenated}x")));
    }
}
