//! Base64 (standard alphabet, padded) encoding of public bytes, for the outbound frames of an
//! encrypted fan-out: nonces and ciphertexts.
//!
//! Every encrypted recipient's frame is mostly base64 (a 200-byte publication is 288 characters
//! of ciphertext), so the encoding is a large share of the per-recipient cost. On x86-64 and
//! on AArch64 with NEON it runs on the `base64` crate's SIMD engine (AVX2 or NEON, chosen once
//! at run time): about half the time of a 12-bit-table scalar encoder on a 216-byte
//! ciphertext, a quarter of it on a kilobyte. Elsewhere it is the crate's scalar `STANDARD`
//! engine. The output is the `STANDARD` engine's, byte for byte (tested).
//!
//! # Security
//! The scalar code (the fallback engine, and the SIMD engine's own handling of short inputs
//! and tails) looks up a table indexed by the input, so its timing can depend on it: use this
//! only for public bytes (nonces, ciphertexts), never for keys or plaintext.

use base64::Engine as _;

use super::CryptoError;

/// The engine, with the instruction set detected once (where the crate has a SIMD engine).
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
static ENGINE: std::sync::LazyLock<base64::engine::Simd> = std::sync::LazyLock::new(|| {
    base64::engine::Simd::standard(base64::engine::general_purpose::PAD)
});

/// The engine: the scalar one on targets without a SIMD engine in the crate.
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
)))]
static ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Padded base64 length of `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the base64 of `input` to `out`. (It cannot fail: the engine is given exactly the
/// padded length. Were it to, `out` is left as it was and the frame is not made.)
pub(crate) fn encode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
    let start = out.len();
    let len = encoded_len(input.len());
    out.resize(start + len, 0);
    match ENGINE.encode_slice(input, &mut out[start..]) {
        Ok(written) if written == len => Ok(()),
        _ => {
            out.truncate(start);
            Err(CryptoError::Encrypt)
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    fn reference(input: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(input)
    }

    #[test]
    fn every_length_up_to_a_kilobyte_matches_the_base64_crate() {
        let data: Vec<u8> = (0..1100u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in 0..=1024 {
            for offset in [0, 1, 5] {
                let input = &data[offset..offset + len];
                let mut out = b"prefix".to_vec();
                encode_into(input, &mut out).expect("encode");
                assert_eq!(&out[..6], b"prefix");
                assert_eq!(
                    std::str::from_utf8(&out[6..]).expect("ascii"),
                    reference(input),
                    "len {len} offset {offset}"
                );
                assert_eq!(out.len() - 6, encoded_len(len));
            }
        }
        let every_value: Vec<u8> = (0..=255u8).cycle().take(3 * 256 + 2).collect();
        let mut out = Vec::new();
        encode_into(&every_value, &mut out).expect("encode");
        assert_eq!(out, reference(&every_value).as_bytes());
    }

    proptest! {
        #[test]
        fn random_input_matches_the_base64_crate(input in prop::collection::vec(any::<u8>(), 0..=4096)) {
            let mut out = Vec::new();
            encode_into(&input, &mut out).expect("encode");
            prop_assert_eq!(out, reference(&input).into_bytes());
        }
    }
}
