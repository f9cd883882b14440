//! Authentication and session lifetime: the compatibility profile's plaintext `authenticate`,
//! the hardened profile's `hello` exchange followed by a sealed `authenticate`, and `refresh`.
//!
//! ```text
//! compatibility:  authenticate {token, publicKey?}  -> hook -> handshake -> connected (plain)
//! hardened:       hello {profile, publicKey}        -> handshake -> hello (plain)
//!                 encrypted(confirm), encrypted(authenticate {token})
//!                                                   -> hook -> connected (sealed)
//! any:            refresh {token}                   -> hook (same user) -> refreshed
//! ```
//!
//! The first `authenticate` or `hello` moves the connection's deadline to `3 x auth_timeout`
//! from then; the connection loop enforces it whatever the client sends meanwhile. After
//! authentication the deadline becomes the session's expiry (4006), if it has one.
//!
//! Fail closed: a client that offers key material (`publicKey` or `profile` of any JSON type)
//! ends in an encrypted session or is closed with 4004; neither a hook nor a malformed field
//! turns it into a plaintext client.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize as _;
use serde_json::Value;

use super::connection::{Connection, Exit};
use super::hooks::{AuthRequest, ClientInfo, HookError, Identity};
use super::metrics::ConnProfile;
use super::policy::Offer;
use super::registry::ClientState;
use super::socket::FrameSocket;
use crate::crypto::{Profile, ServerHello, Session, hardened, room};
use crate::protocol::{
    AuthenticatePayload, CloseCode, ConnectedPayload, RecoverRequest, RefreshedPayload,
    error_message as err, event, frame_json, iso8601, now_iso8601,
};

impl<S> Connection<S>
where
    S: FrameSocket,
{
    /// The first `authenticate` or `hello`: the whole authentication must now finish within
    /// `3 x auth_timeout`.
    fn begin_authentication(&mut self) {
        self.state = ClientState::Authenticating;
        self.guard.auth_started.get_or_insert_with(Instant::now);
        self.server
            .0
            .registry()
            .set_state(&self.handle.id, self.state);
        let budget = self.server.0.config.auth_timeout * 3;
        self.handle.set_deadline(Some(Instant::now() + budget));
    }

    /// Whether every frame of this client must be a sealed record (a hardened session, from
    /// its `hello` on): a plaintext frame on such a session may have been injected on the
    /// path, so it neither counts as activity nor acts.
    pub(super) fn sealed_only(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(crate::crypto::Session::open_failure_is_fatal)
    }

    /// Whether the hardened `hello` exchange is done and the sealed `authenticate` is awaited.
    pub(super) fn awaiting_sealed_credentials(&self) -> bool {
        self.state == ClientState::Authenticating && self.session.is_some()
    }

    /// Hardened profile, step 1: the key exchange. Answers with the server `hello`; no
    /// credential has been seen yet.
    pub(super) async fn hello(&mut self, data: Option<Value>) -> Option<Exit> {
        self.begin_authentication();
        let raw = data.unwrap_or(Value::Null);
        let profile = raw.get("profile").and_then(Value::as_str);
        let key = raw.get("publicKey").and_then(Value::as_str);
        let (Some(hardened::PROFILE_ID), Some(key)) = (profile, key) else {
            tracing::debug!(client = %self.handle.id, "hello without the hardened profile or a key");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        };
        if !self.server.0.config.encryption.admits(Offer::Hardened) {
            tracing::debug!(client = %self.handle.id, "hardened profile refused by the policy");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        }
        let offer = AuthenticatePayload {
            public_key: Some(key.to_owned()),
            profile: Some(hardened::PROFILE_ID.to_owned()),
            ..AuthenticatePayload::default()
        };
        let Some((hello, session)) = self.establish(&offer) else {
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        };
        if session.profile() != Profile::Hardened {
            tracing::debug!(client = %self.handle.id, "handshake hook answered hello in another profile");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        }
        let payload = hello.hello_payload(&self.handle.id);
        let data = serde_json::to_string(&payload).unwrap_or_default();
        // The server hello is plaintext: it is what the client derives its keys from. Every
        // frame after it is sealed.
        if self
            .send_plain(frame_json(event::HELLO, &data))
            .await
            .is_err()
        {
            return Some(Exit::Gone);
        }
        self.session = Some(session);
        None
    }

    /// Compatibility profile: plaintext `authenticate` (hook, then handshake, then `connected`).
    pub(super) async fn authenticate(&mut self, data: Option<Value>) -> Option<Exit> {
        self.begin_authentication();
        let raw = data.unwrap_or(Value::Null);
        // Key material of any JSON type means the client wants encryption: it gets it or 4004.
        let offers_key = raw.get("publicKey").is_some();
        if raw.get("profile").is_some() {
            // Hardened credentials never travel in a plaintext `authenticate` (see `hello`);
            // `sealwire-v1`, which did that, is retired.
            tracing::debug!(client = %self.handle.id, "profile in a plaintext authenticate");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        }
        let policy = self.server.0.config.encryption;
        if offers_key && !policy.admits(Offer::Compat) {
            tracing::debug!(client = %self.handle.id, %policy, "compatibility profile refused");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        }
        let payload = match AuthenticatePayload::deserialize(&raw) {
            Ok(p) => p,
            Err(_) if offers_key => {
                return Some(
                    self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                        .await,
                );
            }
            Err(_) => AuthenticatePayload::default(),
        };
        // Refused before the authenticate hook runs: a policy that refuses plaintext clients
        // never hands their credentials to the hook, and the answer (4004) is the same
        // whether the token is valid or not.
        if !offers_key && !policy.admits(Offer::Plaintext) {
            tracing::debug!(client = %self.handle.id, %policy, "no key while encryption is required");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        }
        let recover = super::recovery::recover_request(&raw);
        let identity = match self.identify(payload.token.clone(), raw).await {
            Ok(identity) => identity,
            Err(exit) => return Some(exit),
        };
        let hello = if offers_key {
            match self.establish(&payload) {
                Some((hello, session)) if session.profile() == Profile::Compat => {
                    self.session = Some(session);
                    Some(hello)
                }
                _ => {
                    return Some(
                        self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                            .await,
                    );
                }
            }
        } else {
            None
        };
        self.admit(identity, hello, recover).await
    }

    /// Hardened profile, step 2: the sealed `authenticate` (the key confirmation has been
    /// checked already).
    pub(super) async fn sealed_authenticate(&mut self, data: Option<Value>) -> Option<Exit> {
        let raw = data.unwrap_or(Value::Null);
        let token = raw.get("token").and_then(Value::as_str).map(str::to_owned);
        let recover = super::recovery::recover_request(&raw);
        // Room keys (§14): asked for inside the record layer, so nobody on the path can add
        // or strip the request.
        let room_keys = raw.get("roomKeys").and_then(Value::as_str) == Some(room::EXTENSION_ID)
            && self.server.0.room_keys.is_some();
        // Binary room records (§14.6): only where the door carries binary messages as they are.
        let binary = room_keys
            && raw.get("roomRecords").and_then(Value::as_str) == Some(room::binary::RECORDS_BINARY)
            && self.socket.carries_binary();
        let identity = match self.identify(token, raw).await {
            Ok(identity) => identity,
            Err(exit) => return Some(exit),
        };
        if room_keys {
            // Before the client enters any room, so that no epoch misses it.
            self.handle.take_room_keys();
            if binary {
                self.extras.get_or_insert_default().binary_room_records = true;
            }
        }
        self.admit(identity, None, recover).await
    }

    /// Runs the handshake hook; `None` when it fails or declines (the caller closes 4004).
    fn establish(&self, offer: &AuthenticatePayload) -> Option<(ServerHello, Session)> {
        let outcome = match &self.server.0.hooks.handshake {
            Some(h) => h.handshake(&self.handle.id, offer),
            None => Err(HookError::new("handshake disabled")),
        };
        match outcome {
            Ok(Some(pair)) => {
                self.server.0.metrics.handshake();
                Some(pair)
            }
            Ok(None) => {
                tracing::debug!(client = %self.handle.id, "handshake hook declined a client that sent a key");
                None
            }
            Err(e) => {
                tracing::debug!(client = %self.handle.id, error = %e, "handshake failed");
                None
            }
        }
    }

    /// Runs the authenticate hook on `token`; the close to perform when it says no.
    async fn identify(&mut self, token: Option<String>, payload: Value) -> Result<Identity, Exit> {
        let Some(authenticator) = self.server.0.hooks.authenticator.clone() else {
            return Err(self.fail(err::AUTH_ERROR, CloseCode::AuthFailed).await);
        };
        let request = AuthRequest {
            client_id: String::from(&*self.handle.id),
            remote_addr: self.remote,
            token,
            payload,
            // The upgrade request goes to the first authentication only; the connection keeps
            // nothing of it afterwards.
            upgrade: self.upgrade.take(),
            refresh: false,
        };
        match authenticator.authenticate(request).await {
            Ok(Some(identity)) if !identity.user_id.is_empty() && !expired(identity.expires_at) => {
                Ok(identity)
            }
            Ok(_) => Err(self.fail(err::AUTH_FAILED, CloseCode::AuthFailed).await),
            Err(e) => {
                tracing::debug!(client = %self.handle.id, error = %e, "authenticate hook failed");
                Err(self.fail(err::AUTH_ERROR, CloseCode::AuthFailed).await)
            }
        }
    }

    /// Indexes the client, sends `connected` (plaintext in the compatibility profile, where
    /// `hello` carries the handshake reply; sealed in the hardened one), recovers what a
    /// reconnecting client missed, and runs the connected hook.
    async fn admit(
        &mut self,
        identity: Identity,
        hello: Option<ServerHello>,
        recover: Option<RecoverRequest>,
    ) -> Option<Exit> {
        let info = Arc::new(ClientInfo {
            id: String::from(&*self.handle.id),
            user_id: identity.user_id,
            metadata: identity.metadata,
            encrypted: self.session.is_some(),
            remote_addr: self.remote,
            connected_at: self.connected_at,
            expires_at: identity.expires_at,
        });
        self.info = Some(Arc::clone(&info));
        // The session exists before the client enters any index, so no message can reach it
        // unencrypted.
        let defaults = &self.server.0.config.default_rooms;
        let mut rooms = Vec::with_capacity(1 + defaults.len());
        rooms.push(String::from(&*self.handle.id));
        rooms.extend(defaults.iter().cloned());
        let entered = self
            .entry_positions(Some(&info.user_id), defaults, recover.as_ref())
            .await;
        let id = &self.handle.id;
        let registered = Arc::clone(&info);
        self.server.0.update_registry(|registry, changes| {
            registry.authenticate(id, registered, &rooms, changes);
        });
        // Told it is connected only once sends from other instances to it, its user and its
        // rooms reach this one (interest-based subscriptions are confirmed by Redis).
        self.server
            .await_client_targets(&info.user_id, &info.id, &rooms)
            .await;
        self.state = ClientState::Authenticated;
        self.socket.admitted(&info.id);
        self.handle.set_deadline(info.expires_at.map(instant_of));
        let profile = ConnProfile::of(self.session.as_ref().map(Session::profile));
        let elapsed = self.guard.auth_started.map(|t| t.elapsed());
        self.server.0.metrics.authenticated(profile, elapsed);
        self.guard.profile = Some(profile);

        let mut connected = ConnectedPayload {
            id: info.id.clone(),
            user_id: info.user_id.clone(),
            time: now_iso8601(),
            expires_at: info.expires_at.map(iso8601),
            server_public_key: None,
            salt: None,
            profile: None,
            extra: serde_json::Map::new(),
        };
        let plain = hello.is_some() || self.session.is_none();
        if let Some(hello) = hello {
            hello.move_into(&mut connected);
        }
        // The largest message the client may send: an SDK can refuse a larger one itself
        // instead of losing it to a 1009.
        connected.extra.insert(
            "maxMessageBytes".to_owned(),
            Value::from(self.server.0.config.max_message_bytes),
        );
        if self.handle.holds_room_keys() {
            connected
                .extra
                .insert("roomKeys".to_owned(), Value::from(room::EXTENSION_ID));
            if self.binary_room_records() {
                connected.extra.insert(
                    "roomRecords".to_owned(),
                    Value::from(room::binary::RECORDS_BINARY),
                );
            }
        }
        let data = serde_json::to_string(&connected).unwrap_or_default();
        if plain {
            if self
                .send_plain(frame_json(event::CONNECTED, &data))
                .await
                .is_err()
            {
                return Some(Exit::Gone);
            }
        } else {
            // Hardened: sealed, so the user id the client is told is authenticated.
            self.send_system(event::CONNECTED, &data).await;
        }
        tracing::debug!(client = %info.id, user = %info.user_id, encrypted = info.encrypted, "authenticated");
        // The rooms the client is in now, but its own id room (which has no history): the
        // door may have changed the default rooms on admission (Socket.IO swaps in its own),
        // and a recovery reads only streams the client is in.
        // Looked up only for a client that asked for a recovery or positions.
        if recover.is_some() || self.positions().is_some() {
            let own = &*info.id;
            let rooms: Vec<String> = self
                .server
                .client_rooms(own)
                .unwrap_or_default()
                .into_iter()
                .filter(|room| room != own)
                .collect();
            if let Some(exit) = self.recover(recover, &rooms, &[], true, entered).await {
                return Some(exit);
            }
        }
        self.guard.announced = true;
        if let Some(hook) = self.server.0.hooks.connected.clone() {
            hook.on_connected(self.server.clone(), info).await;
        }
        None
    }

    /// `refresh {token}`: new credentials for the same user extend the session.
    pub(super) async fn refresh(&mut self, data: Option<Value>) {
        // Each refresh runs the authenticate hook: a client that sends them faster than its
        // allowance is answered as if the hook had refused, without running it.
        if !self.take_refresh() {
            tracing::debug!(client = %self.handle.id, "refresh over the allowance refused");
            self.send_error(err::REFRESH_FAILED).await;
            return;
        }
        let raw = data.unwrap_or(Value::Null);
        let token = raw.get("token").and_then(Value::as_str).map(str::to_owned);
        let (Some(current), Some(authenticator)) =
            (self.info.clone(), self.server.0.hooks.authenticator.clone())
        else {
            self.send_error(err::REFRESH_FAILED).await;
            return;
        };
        let request = AuthRequest {
            client_id: String::from(&*self.handle.id),
            remote_addr: self.remote,
            token,
            payload: raw,
            upgrade: None,
            refresh: true,
        };
        let identity = match authenticator.authenticate(request).await {
            Ok(Some(identity))
                if identity.user_id == current.user_id && !expired(identity.expires_at) =>
            {
                identity
            }
            Ok(Some(other)) if other.user_id != current.user_id => {
                tracing::debug!(client = %self.handle.id, "refresh for another user refused");
                self.send_error(err::REFRESH_FAILED).await;
                return;
            }
            outcome => {
                let reason = match outcome {
                    Ok(None) => "credentials refused",
                    Ok(Some(_)) => "token expired",
                    Err(_) => "authenticate hook failed",
                };
                tracing::debug!(client = %self.handle.id, reason, "refresh refused");
                self.send_error(err::REFRESH_FAILED).await;
                return;
            }
        };
        let info = Arc::new(ClientInfo {
            metadata: identity.metadata,
            expires_at: identity.expires_at,
            ..(*current).clone()
        });
        self.server
            .0
            .registry()
            .update_info(&self.handle.id, Arc::clone(&info));
        self.handle.set_deadline(info.expires_at.map(instant_of));
        self.info = Some(Arc::clone(&info));
        let reply = RefreshedPayload {
            user_id: info.user_id.clone(),
            time: now_iso8601(),
            expires_at: info.expires_at.map(iso8601),
        };
        let data = serde_json::to_string(&reply).unwrap_or_default();
        tracing::debug!(client = %self.handle.id, "session refreshed");
        self.send_system(event::REFRESHED, &data).await;
    }

    /// Sends an error (sealed once a session exists) and returns the close to perform.
    pub(super) async fn fail(&mut self, message: &str, code: CloseCode) -> Exit {
        self.send_error(message).await;
        Exit::Close(code)
    }
}

/// Whether an expiry has already passed.
fn expired(at: Option<SystemTime>) -> bool {
    at.is_some_and(|at| at <= SystemTime::now())
}

/// The monotonic instant matching a wall-clock expiry (now, if it has passed).
fn instant_of(at: SystemTime) -> Instant {
    // A token's `exp` can be centuries away: past a hundred years it is "never" all the same,
    // and an `Instant` that far out does not exist.
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    let now = Instant::now();
    now.checked_add(left.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_centuries_away_is_a_deadline_not_a_panic() {
        let far = std::time::UNIX_EPOCH + Duration::from_secs(10_000_000_000_000);
        let at = instant_of(far);
        assert!(at > Instant::now() + Duration::from_secs(90 * 365 * 24 * 3600));
        let past = SystemTime::now() - Duration::from_secs(60);
        assert!(instant_of(past) <= Instant::now());
    }
}
