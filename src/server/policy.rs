//! Who must encrypt, and how: one value instead of independent switches, so that every
//! combination the server can be in is named, documented and tested.

/// The server's encryption policy (`ServerConfig::encryption`, `--encryption`).
///
/// | policy | plaintext client | compatibility key in `authenticate` | hardened `hello` |
/// |---|---|---|---|
/// | [`Off`](Self::Off) | accepted | 4004 | 4004 |
/// | [`Optional`](Self::Optional) (default) | accepted | encrypted | encrypted |
/// | [`Required`](Self::Required) | 4004 | encrypted | encrypted |
/// | [`HardenedOnly`](Self::HardenedOnly) | 4004 | 4004 | encrypted |
///
/// Whatever the policy, a client that offers key material ends in an encrypted session or is
/// closed with 4004 ("Encryption handshake failed"): a malformed key, a handshake hook that
/// declines, or a profile the policy refuses never turns it into a plaintext client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EncryptionPolicy {
    /// No handshake: every client is plaintext; a client that offers key material gets 4004.
    Off,
    /// Each client chooses: plaintext, the IGNIS compatibility profile or the hardened one.
    #[default]
    Optional,
    /// Every client encrypts, in either profile; a client without a key gets 4004.
    Required,
    /// Every client uses the hardened profile (`sealwire-v2`): credentials never cross in the
    /// clear. Plaintext and compatibility-profile clients get 4004.
    HardenedOnly,
}

/// What a client offers in its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offer {
    /// A plaintext `authenticate` without key material.
    Plaintext,
    /// A plaintext `authenticate` with `publicKey`: the IGNIS compatibility profile.
    Compat,
    /// A `hello` asking for the hardened profile.
    Hardened,
}

impl EncryptionPolicy {
    /// Every policy, for exhaustive tests and documentation.
    pub const ALL: [Self; 4] = [
        Self::Off,
        Self::Optional,
        Self::Required,
        Self::HardenedOnly,
    ];

    /// Whether a client making `offer` may go on (otherwise: 4004).
    #[must_use]
    pub const fn admits(self, offer: Offer) -> bool {
        matches!(
            (self, offer),
            (Self::Off | Self::Optional, Offer::Plaintext)
                | (Self::Optional | Self::Required, Offer::Compat)
                | (
                    Self::Optional | Self::Required | Self::HardenedOnly,
                    Offer::Hardened
                )
        )
    }

    /// Whether a plaintext client is refused.
    #[must_use]
    pub const fn requires_encryption(self) -> bool {
        !self.admits(Offer::Plaintext)
    }

    /// Whether the server runs a handshake at all.
    #[must_use]
    pub const fn handshakes(self) -> bool {
        !matches!(self, Self::Off)
    }

    /// The name used by `--encryption` and the admin API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
            Self::HardenedOnly => "hardened-only",
        }
    }
}

impl std::str::FromStr for EncryptionPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown encryption policy {s:?} (off, optional, required, hardened-only)")
            })
    }
}

impl std::fmt::Display for EncryptionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in the type's docs, cell by cell.
    #[test]
    fn every_combination_is_as_documented() {
        use EncryptionPolicy::*;
        use Offer::*;
        let table = [
            (Off, [true, false, false]),
            (Optional, [true, true, true]),
            (Required, [false, true, true]),
            (HardenedOnly, [false, false, true]),
        ];
        for (policy, row) in table {
            for (offer, admitted) in [Plaintext, Compat, Hardened].into_iter().zip(row) {
                assert_eq!(policy.admits(offer), admitted, "{policy} {offer:?}");
            }
            assert_eq!(policy.as_str().parse::<EncryptionPolicy>(), Ok(policy));
        }
        assert!("strict".parse::<EncryptionPolicy>().is_err());
        assert_eq!(EncryptionPolicy::default(), Optional);
    }
}
