//! Who receives a publication: the authenticated recipients of a target, and the one list
//! a burst keeps reusing.
//!
//! Fan-out used to collect a fresh `Vec` of recipient handles for every publication: one
//! allocation, and a reference-count increment and decrement on every recipient's handle, a
//! cache line the recipient's own connection task is writing at the same time. The registry
//! now keeps the list of the last target it was asked for ([`Registry::recipients_of`]) as a
//! shared slice until anything changes who receives what (a client's state, a membership:
//! every such change clears it), so a burst to one target takes the list with one
//! reference-count increment per publication.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use super::{ClientState, Registry};
use crate::protocol::BusTarget;
use crate::server::outbox::ClientHandle;

/// A target's authenticated recipients, shared.
pub(crate) type Recipients = Arc<[Arc<ClientHandle>]>;

/// The recipients of the last broadcast, room or user target asked for ([`Registry`] clears
/// it on every change to who receives what).
#[derive(Debug, Default)]
pub(crate) struct RecipientCache(Option<(BusTarget, Recipients)>);

impl RecipientCache {
    /// Forgets the list (and the handles it holds).
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

/// One room as room-key delivery sees it ([`Registry::room_snapshot`]).
#[derive(Debug)]
pub(crate) struct RoomSnapshot {
    /// Changes whenever a member joins or leaves.
    pub(crate) generation: u64,
    /// Who receives the publication (the shared list of [`Registry::recipients_of`] when
    /// nobody is excluded).
    pub(crate) recipients: Recipients,
    /// Who must hold the room's key (when asked for).
    pub(crate) holders: Vec<Arc<ClientHandle>>,
}

impl Registry {
    /// The authenticated recipients of `target`, before any exclusion: the kept list when it
    /// is for `target`, a new one (kept in its place, unless it is for one client) otherwise.
    pub(crate) fn recipients_of(&mut self, target: &BusTarget) -> Recipients {
        if let Some((kept, list)) = &self.recipients.0
            && kept == target
        {
            return Arc::clone(list);
        }
        let list: Recipients = self.recipients(target, &[]).into();
        if !matches!(target, BusTarget::Client(_)) {
            self.recipients.0 = Some((target.clone(), Arc::clone(&list)));
        }
        list
    }

    /// [`Self::recipients_of`] a room, without building its target while the kept list is
    /// the room's.
    fn room_recipients(&mut self, room: &str) -> Recipients {
        match &self.recipients.0 {
            Some((BusTarget::Room(kept), list)) if kept == room => Arc::clone(list),
            _ => self.recipients_of(&BusTarget::Room(room.to_owned())),
        }
    }

    /// Authenticated recipients of `target`, minus `exclude` (a new list).
    pub(crate) fn recipients(
        &self,
        target: &BusTarget,
        exclude: &[String],
    ) -> Vec<Arc<ClientHandle>> {
        let exclude = self.exclusions(exclude);
        let exclude = &exclude[..];
        let excluded = |id: &str| exclude.iter().any(|e| e == id);
        match target {
            BusTarget::Broadcast => self
                .clients
                .values()
                .filter(|e| e.state == ClientState::Authenticated && !excluded(&e.handle.id))
                .map(|e| Arc::clone(&e.handle))
                .collect(),
            BusTarget::Room(room) => self.members(self.rooms.get(room), exclude),
            BusTarget::User(user) => self.members(self.users.get(user), exclude),
            BusTarget::Client(id) => {
                if excluded(id) {
                    Vec::new()
                } else {
                    self.authenticated_handle(id).into_iter().collect()
                }
            }
        }
    }

    /// The authenticated clients among `ids`, minus `exclude`.
    fn members(
        &self,
        ids: Option<&HashSet<Arc<str>>>,
        exclude: &[String],
    ) -> Vec<Arc<ClientHandle>> {
        ids.into_iter()
            .flatten()
            .filter(|id| !exclude.iter().any(|e| e == &***id))
            .filter_map(|id| self.authenticated_handle(id))
            .collect()
    }

    /// A room's membership generation, and its authenticated recipients minus `exclude`
    /// (taken under one lock, so they agree; without exclusions, the shared list of
    /// [`Self::recipients_of`], so a burst to the room does not rebuild it per publication).
    /// With `holders`, also every authenticated member that holds room keys, excluded or not.
    pub(crate) fn room_snapshot(
        &mut self,
        room: &str,
        exclude: &[String],
        holders: bool,
    ) -> RoomSnapshot {
        let holders = if holders {
            let mut all = self.members(self.rooms.get(room), &[]);
            all.retain(|h| h.holds_room_keys());
            all
        } else {
            Vec::new()
        };
        let recipients = if exclude.is_empty() {
            self.room_recipients(room)
        } else {
            self.members(self.rooms.get(room), &self.exclusions(exclude))
                .into()
        };
        RoomSnapshot {
            generation: self.generations.get(room).copied().unwrap_or(0),
            recipients,
            holders,
        }
    }

    /// An exclusion list with aliases replaced by the ids of their clients (borrowed as it is
    /// while no client has an alias).
    fn exclusions<'a>(&self, exclude: &'a [String]) -> Cow<'a, [String]> {
        if exclude.is_empty() || self.aliases.is_empty() {
            return Cow::Borrowed(exclude);
        }
        exclude
            .iter()
            .map(|e| match self.aliases.get(e.as_str()) {
                Some(id) => id.to_string(),
                None => e.clone(),
            })
            .collect()
    }

    /// The handle of an authenticated client, named by its id or its alias.
    fn authenticated_handle(&self, id: &str) -> Option<Arc<ClientHandle>> {
        let entry = match self.clients.get(id) {
            Some(entry) => entry,
            None => self.clients.get(self.aliases.get(id)?)?,
        };
        Some(entry)
            .filter(|e| e.state == ClientState::Authenticated)
            .map(|e| Arc::clone(&e.handle))
    }
}
