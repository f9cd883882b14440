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
