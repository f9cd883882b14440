//! HKDF-SHA256 (RFC 5869).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Derives a 32-byte key: `HKDF-Expand(HKDF-Extract(salt, ikm), info, 32)`.
///
/// # Security
/// Never use raw ECDH output as a key; pass it here as `ikm` with a fresh salt.
#[must_use]
pub fn derive_key(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // 32 bytes is far below HKDF-SHA256's 255 * 32 byte output limit, so expand cannot fail.
    if hk.expand(info, okm.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 output of 32 bytes is always valid");
    }
    okm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles only for types that wipe themselves when dropped.
    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn keyed_states_are_wiped_on_drop() {
        use hmac::block_api::HmacCore;
        use hmac::digest::block_api::{Buffer, EagerHash};
        // `Hmac<Sha256>` is an `HmacCore` (the inner and outer hash states, each keyed after
        // its first block) plus a buffer of pending input; `Hkdf<Sha256>` is nothing but an
        // `Hmac<Sha256>` keyed with the PRK. `hmac` 0.13 does not put the marker trait on
        // `Hmac` itself, so each part is checked: with the `zeroize` features of `hmac` and
        // `sha2` every one of them wipes itself on drop, and so the drop glue of `Hmac` and
        // `Hkdf` wipes them all.
        assert_zeroize_on_drop::<<Sha256 as EagerHash>::Core>();
        assert_zeroize_on_drop::<Buffer<HmacCore<Sha256>>>();
        assert_zeroize_on_drop::<Sha256>();
        // And those are the parts: an HMAC holds no other state.
        assert_eq!(
            size_of::<hmac::Hmac<Sha256>>(),
            2 * size_of::<<Sha256 as EagerHash>::Core>() + size_of::<Buffer<HmacCore<Sha256>>>()
        );
        assert_eq!(size_of::<Hkdf<Sha256>>(), size_of::<hmac::Hmac<Sha256>>());
    }

    #[test]
    fn rfc5869_case_1_prefix() {
        // RFC 5869 A.1 (first 32 bytes of the 42-byte OKM).
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = derive_key(&salt, &ikm, &info);
        assert_eq!(
            okm[..],
            [
                0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
                0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
                0xec, 0xc4, 0xc5, 0xbf
            ]
        );
    }
}
