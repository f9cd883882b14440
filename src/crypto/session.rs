//! An established AES-256-GCM session (either profile): seals outbound and opens inbound
//! `encrypted` frames.

use base64::Engine as _;
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::aead::{AeadBackend, SessionKey};
use super::hardened::{Direction, KeySchedule, Record};
use super::{CryptoError, NONCE_LEN, TAG_LEN, b64, frame, hardened};
use crate::protocol::EncryptedPayload;

/// Which crypto profile a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Profile {
    /// IGNIS compatibility profile: one key for both directions, random 96-bit IVs, no AAD.
    #[default]
    Compat,
    /// Hardened profile `sealwire-v2`: credentials sealed after the key exchange, transcript-bound keys per direction, counter nonces,
    /// strict in-order records, rekeying, key confirmation, optional server signature.
    Hardened,
}

impl Profile {
    /// The profile id used on the wire (`None` for the compatibility profile, which IGNIS
    /// clients do not name).
    #[must_use]
    pub const fn wire_id(self) -> Option<&'static str> {
        match self {
            Self::Compat => None,
            Self::Hardened => Some(hardened::PROFILE_ID),
        }
    }

    /// Parses the `profile` field of `authenticate` (absent means compatibility).
    ///
    /// # Errors
    /// [`CryptoError::Handshake`] for an unknown profile id.
    pub fn from_wire(id: Option<&str>) -> Result<Self, CryptoError> {
        match id {
            None => Ok(Self::Compat),
            Some(hardened::PROFILE_ID) => Ok(Self::Hardened),
            Some(_) => Err(CryptoError::Handshake),
        }
    }
}

/// Which end of the connection a session sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

// The compatibility key stays inline (the common case needs no extra allocation); the
// hardened state, two keys plus chain state, is boxed.
enum Inner {
    Compat(SessionKey),
    Hardened(Box<Hardened>),
}

struct Hardened {
    send: Record,
    recv: Record,
    /// Server side: the confirmation key and transcript hash the client's `finished` MAC is
    /// checked against, until it has been.
    expect_client_finished: Option<(Zeroizing<[u8; 32]>, [u8; 32])>,
}

/// An established session bound to one connection, in either profile. The server and the
/// client use the same type; only the direction of each key differs.
///
/// # Security
/// Owned by exactly one connection task; never cloned, never logged. Key material (keys, AES
/// key schedules, epoch secrets) is wiped on drop and when [`Session::compact`] drops the
/// expanded schedules.
///
/// In the hardened profile every failure of [`Session::open`] is final for the connection:
/// the receive sequence cannot resynchronise, so callers close it (the server uses 4004).
pub struct Session {
    inner: Inner,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("profile", &self.profile())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Builds a compatibility-profile session from a derived 32-byte key, on the fastest
    /// AES-GCM implementation.
    #[must_use]
    pub fn compat(key: &Zeroizing<[u8; 32]>) -> Self {
        Self::compat_with(key, AeadBackend::default())
    }

    /// Builds a compatibility-profile session on the AES-GCM implementation `aead`.
    #[must_use]
    pub fn compat_with(key: &Zeroizing<[u8; 32]>, aead: AeadBackend) -> Self {
        Self {
            inner: Inner::Compat(SessionKey::new(key, aead)),
        }
    }

    /// Builds a hardened session from a key schedule.
    pub(crate) fn hardened(
        role: Role,
        schedule: &KeySchedule,
        rekey_after: u32,
        expect_client_finished_th: Option<[u8; 32]>,
        aead: AeadBackend,
    ) -> Self {
        let expect_client_finished =
            expect_client_finished_th.map(|th| (Zeroizing::new(*schedule.confirm), th));
        let c2s = Record::new(Direction::ClientToServer, &schedule.c2s, rekey_after, aead);
        let s2c = Record::new(Direction::ServerToClient, &schedule.s2c, rekey_after, aead);
        let (send, recv) = match role {
            Role::Server => (s2c, c2s),
            Role::Client => (c2s, s2c),
        };
        Self {
            inner: Inner::Hardened(Box::new(Hardened {
                send,
                recv,
                expect_client_finished,
            })),
        }
    }

    /// Drops the expanded AES key schedules (about 1 KiB per key); the next seal or open
    /// expands them again from the stored keys. The server calls this once per heartbeat
    /// interval, so an encrypted connection that has gone quiet holds only its 32-byte keys.
    pub fn compact(&mut self) {
        match &mut self.inner {
            Inner::Compat(key) => key.compact(),
            Inner::Hardened(h) => {
                h.send.compact();
                h.recv.compact();
            }
        }
    }

    /// The profile this session speaks.
    #[must_use]
    pub fn profile(&self) -> Profile {
        match self.inner {
            Inner::Compat(_) => Profile::Compat,
            Inner::Hardened(_) => Profile::Hardened,
        }
    }

    /// Whether a failed [`Session::open`] must end the connection (hardened profile).
    #[must_use]
    pub fn open_failure_is_fatal(&self) -> bool {
        matches!(self.inner, Inner::Hardened(_))
    }

    /// Server side of the hardened profile: `true` until the client's key confirmation has
    /// been checked with [`Session::confirm_client`]. The client's first record must carry it.
    #[must_use]
    pub fn awaiting_client_confirmation(&self) -> bool {
        matches!(&self.inner, Inner::Hardened(h) if h.expect_client_finished.is_some())
    }

    /// Checks the client's key confirmation (base64 of its `finished` MAC), in constant time.
    ///
    /// # Errors
    /// [`CryptoError::Handshake`] when it does not match, is not base64, or none is expected.
    pub fn confirm_client(&mut self, mac_b64: &str) -> Result<(), CryptoError> {
        let Inner::Hardened(h) = &mut self.inner else {
            return Err(CryptoError::Handshake);
        };
        let Some((confirm, th)) = h.expect_client_finished.as_ref() else {
            return Err(CryptoError::Handshake);
        };
        let got = b64().decode(mac_b64).map_err(|_| CryptoError::Handshake)?;
        hardened::verify_finished(confirm, hardened::label::CLIENT_FINISHED, th, &got)?;
        h.expect_client_finished = None;
        Ok(())
    }

    /// Seals `plaintext`: a fresh random nonce from the thread-local CSPRNG (compatibility),
    /// or the next counter nonce (hardened).
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] if AES-GCM refuses the input (over its length limit) or the
    /// hardened sequence reached its hard limit.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<EncryptedPayload, CryptoError> {
        match &mut self.inner {
            Inner::Compat(_) => self.seal_with_rng(&mut rand::rng(), plaintext),
            Inner::Hardened(h) => seal_hardened(h, plaintext),
        }
    }

    /// Seals with compatibility-profile nonces drawn from `rng` (deterministic in tests).
    /// The hardened profile uses counter nonces and ignores `rng`.
    ///
    /// # Errors
    /// As [`Session::seal`].
    pub fn seal_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<EncryptedPayload, CryptoError> {
        let key = match &mut self.inner {
            Inner::Compat(k) => k,
            Inner::Hardened(h) => return seal_hardened(h, plaintext),
        };
        let mut iv = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut iv);
        let mut buf = vec![0u8; plaintext.len() + TAG_LEN];
        key.seal_to(&iv, b"", plaintext, &mut buf)?;
        Ok(EncryptedPayload {
            iv: b64().encode(iv),
            ct: b64().encode(&buf),
            seq: None,
        })
    }

    /// Seals `plaintext` and returns the complete outbound frame
    /// `{"event":"encrypted","data":{"iv":..,"ct":..[,"seq":..]}}`, the same bytes as
    /// [`encrypted_frame`] of [`Session::seal`]. This is the per-recipient step of an
    /// encrypted fan-out, so it is built in one allocation: the plaintext is read in place
    /// and the base64 is written straight into the frame.
    ///
    /// # Errors
    /// As [`Session::seal`].
    pub fn seal_frame(&mut self, plaintext: &[u8]) -> Result<String, CryptoError> {
        self.seal_frame_with_rng(&mut rand::rng(), plaintext)
    }

    /// [`Session::seal_frame`] with compatibility-profile nonces drawn from `rng`
    /// (deterministic in tests). The hardened profile uses counter nonces and ignores `rng`.
    ///
    /// # Errors
    /// As [`Session::seal`].
    pub fn seal_frame_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<String, CryptoError> {
        // Exactly the frame's length: the message then takes the buffer over as it is (a
        // `Bytes` made from a full `Vec` needs no allocation of its own).
        let len = self
            .sealed_frame_len(plaintext.len())
            .ok_or(CryptoError::Encrypt)?;
        let mut frame = Vec::with_capacity(len);
        self.seal_frame_into_with_rng(rng, plaintext, &mut frame)?;
        // Every byte written is ASCII; the check is one pass over the frame.
        String::from_utf8(frame).map_err(|_| CryptoError::Encrypt)
    }

    /// The exact length of the frame [`Session::seal_frame_into`] appends next for a
    /// plaintext of `plaintext_len` bytes; `None` if it would not fit in memory.
    #[must_use]
    pub fn sealed_frame_len(&self, plaintext_len: usize) -> Option<usize> {
        let seq = match &self.inner {
            Inner::Compat(_) => None,
            Inner::Hardened(h) => Some(h.send.next_seq()),
        };
        frame::sealed_frame_len(plaintext_len, seq)
    }

    /// [`Session::seal_frame`], appended to `out` (a socket's write buffer, say, right behind
    /// a header that needs the frame's length) instead of a buffer of its own: exactly
    /// [`Session::sealed_frame_len`] bytes of ASCII. On failure `out` is left as it was.
    ///
    /// # Errors
    /// As [`Session::seal`].
    pub fn seal_frame_into(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.seal_frame_into_with_rng(&mut rand::rng(), plaintext, out)
    }

    /// [`Session::seal_frame_into`] with compatibility-profile nonces drawn from `rng`.
    fn seal_frame_into_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        match &mut self.inner {
            Inner::Compat(key) => {
                let mut iv = [0u8; NONCE_LEN];
                rng.fill_bytes(&mut iv);
                frame::seal_frame_into(key, &iv, b"", None, plaintext, out)
            }
            Inner::Hardened(h) => h.send.seal_with(|key, seq, nonce, aad| {
                frame::seal_frame_into(key, nonce, aad, Some(seq), plaintext, out)
            }),
        }
    }

    /// Opens an inbound payload. In the hardened profile it must be exactly the next record
    /// (`seq` equal to the expected sequence number, `iv` equal to its counter nonce); on
    /// failure nothing changes.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for any failure: bad base64, wrong nonce, missing, replayed or
    /// reordered sequence number, truncated ciphertext, wrong key or direction, or a flipped
    /// bit. The causes are not distinguished.
    pub fn open(&mut self, payload: &EncryptedPayload) -> Result<Vec<u8>, CryptoError> {
        let iv = b64()
            .decode(&payload.iv)
            .map_err(|_| CryptoError::Decrypt)?;
        let iv: [u8; NONCE_LEN] = iv.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
        let mut buf = b64()
            .decode(&payload.ct)
            .map_err(|_| CryptoError::Decrypt)?;
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        match &mut self.inner {
            Inner::Compat(key) => {
                if payload.seq.is_some() {
                    return Err(CryptoError::Decrypt);
                }
                key.open_in_place(&iv, b"", &mut buf)?;
                Ok(buf)
            }
            Inner::Hardened(h) => {
                let seq = payload.seq.ok_or(CryptoError::Decrypt)?;
                h.recv.open(seq, &iv, buf)
            }
        }
    }

    /// Sequence number the next sealed record will carry (hardened), `None` otherwise.
    #[must_use]
    pub fn next_send_seq(&self) -> Option<u64> {
        match &self.inner {
            Inner::Compat(_) => None,
            Inner::Hardened(h) => Some(h.send.next_seq()),
        }
    }
}

fn seal_hardened(h: &mut Hardened, plaintext: &[u8]) -> Result<EncryptedPayload, CryptoError> {
    let (seq, iv, ct) = h.send.seal(plaintext)?;
    Ok(EncryptedPayload {
        iv: b64().encode(iv),
        ct: b64().encode(ct),
        seq: Some(seq),
    })
}

/// Renders an `encrypted` frame around a payload.
#[must_use]
pub fn encrypted_frame(p: &EncryptedPayload) -> String {
    let mut s = String::with_capacity(p.iv.len() + p.ct.len() + 64);
    s.push_str(r#"{"event":"encrypted","data":{"iv":""#);
    s.push_str(&p.iv);
    s.push_str(r#"","ct":""#);
    s.push_str(&p.ct);
    s.push('"');
    if let Some(seq) = p.seq {
        s.push_str(",\"seq\":");
        s.push_str(&seq.to_string());
    }
    s.push_str("}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let key = Zeroizing::new([9u8; 32]);
        (Session::compat(&key), Session::compat(&key))
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let (mut a, mut b) = pair();
        let p1 = a.seal(b"hello").expect("seal");
        let p2 = a.seal(b"hello").expect("seal");
        assert_ne!(p1.iv, p2.iv);
        assert_ne!(p1.ct, p2.ct);
        assert_eq!(b.open(&p1).expect("open"), b"hello");
        let frame: serde_json::Value =
            serde_json::from_str(&encrypted_frame(&p1)).expect("frame json");
        assert_eq!(frame["event"], "encrypted");
        assert_eq!(frame["data"]["iv"], p1.iv.as_str());
    }

    /// The one-allocation frame writer produces exactly the bytes of the reference path
    /// (seal, then render the payload), in both profiles, on both AES-GCM implementations,
    /// across rekeys, and the peer opens them.
    #[test]
    fn seal_frame_matches_the_reference_rendering() {
        use crate::crypto::hardened::KeySchedule;
        use rand::{SeedableRng, rngs::StdRng};
        let schedule = KeySchedule::derive(&[1u8; 32], &[2u8; 32], &[3u8; 32]);
        for aead in [AeadBackend::RustCrypto, AeadBackend::AwsLc] {
            let key = Zeroizing::new([9u8; 32]);
            let hardened = |role| Session::hardened(role, &schedule, 2, None, aead);
            let sessions = [
                (
                    Session::compat_with(&key, aead),
                    Session::compat_with(&key, aead),
                    Session::compat(&key),
                ),
                (
                    hardened(Role::Server),
                    hardened(Role::Server),
                    hardened(Role::Client),
                ),
            ];
            for (mut fast, mut reference, mut peer) in sessions {
                let (mut r1, mut r2) = (StdRng::seed_from_u64(7), StdRng::seed_from_u64(7));
                for len in [0usize, 1, 2, 3, 200, 4097] {
                    let pt = vec![b'a'; len];
                    let frame = fast.seal_frame_with_rng(&mut r1, &pt).expect("seal_frame");
                    let p = reference.seal_with_rng(&mut r2, &pt).expect("seal");
                    assert_eq!(frame, encrypted_frame(&p), "{aead:?} {len}");
                    assert_eq!(frame.capacity(), frame.len(), "allocated exactly");
                    assert_eq!(peer.open(&p).expect("open"), pt);
                }
            }
        }
    }

    /// Sealing into the socket's buffer appends exactly the announced length behind what the
    /// buffer holds, the same bytes as the reference rendering, in both profiles and across
    /// the sequence numbers whose decimal length changes.
    #[test]
    fn seal_frame_into_appends_exactly_the_announced_frame() {
        use crate::crypto::hardened::KeySchedule;
        use rand::{SeedableRng, rngs::StdRng};
        let schedule = KeySchedule::derive(&[1u8; 32], &[2u8; 32], &[3u8; 32]);
        let key = Zeroizing::new([9u8; 32]);
        let hardened = |role| Session::hardened(role, &schedule, 50, None, AeadBackend::AwsLc);
        let sessions = [
            (Session::compat(&key), Session::compat(&key)),
            (hardened(Role::Server), hardened(Role::Server)),
        ];
        for (mut fast, mut reference) in sessions {
            let (mut r1, mut r2) = (StdRng::seed_from_u64(3), StdRng::seed_from_u64(3));
            for i in 0..=101usize {
                let pt = vec![b'x'; i * 7];
                let len = fast.sealed_frame_len(pt.len()).expect("length");
                let mut out = b"\x81~\x01\x02".to_vec();
                fast.seal_frame_into_with_rng(&mut r1, &pt, &mut out)
                    .expect("seal into");
                assert_eq!(out.len(), 4 + len, "record {i}");
                let p = reference.seal_with_rng(&mut r2, &pt).expect("seal");
                assert_eq!(&out[..4], b"\x81~\x01\x02", "what was there stays");
                assert_eq!(&out[4..], encrypted_frame(&p).as_bytes(), "record {i}");
            }
        }
    }

    #[test]
    fn tampering_is_rejected() {
        let (mut a, mut b) = pair();
        let p = a.seal(b"secret payload").expect("seal");
        let ct = b64().decode(&p.ct).expect("b64");
        for i in 0..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 0x01;
            let bad = EncryptedPayload {
                ct: b64().encode(&t),
                ..p.clone()
            };
            assert_eq!(b.open(&bad), Err(CryptoError::Decrypt), "byte {i}");
        }
        let short = EncryptedPayload {
            ct: b64().encode(&ct[..TAG_LEN - 1]),
            ..p.clone()
        };
        assert_eq!(b.open(&short), Err(CryptoError::Decrypt));
        let bad_iv = EncryptedPayload {
            iv: b64().encode([0u8; 8]),
            ..p.clone()
        };
        assert_eq!(b.open(&bad_iv), Err(CryptoError::Decrypt));
        let wrong_key = Session::compat(&Zeroizing::new([8u8; 32])).open(&p);
        assert_eq!(wrong_key, Err(CryptoError::Decrypt));
    }
}
