//! Base64 (standard alphabet, padded) encoding of public bytes, for the outbound frames of an
//! encrypted fan-out: nonces and ciphertexts.
//!
//! Every encrypted recipient's frame is mostly base64 (a 200-byte publication is 288 characters
//! of ciphertext), so the encoding is a large share of the per-recipient cost. This encoder
//! looks up two output characters per 12 input bits (a 4,096-entry table) and handles six
//! input bytes per step, several times fewer operations than a character-at-a-time encoder.
//! Its output is the `base64` crate's `STANDARD` engine's, byte for byte (tested).
//!
//! # Security
//! The table lookups are indexed by the input, so their timing can depend on it: use this
//! only for public bytes (nonces, ciphertexts), never for keys or plaintext.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Two characters for every 12-bit value, as a little-endian `u16` (first character low).
static PAIRS: [u16; 4096] = pairs();

const fn pairs() -> [u16; 4096] {
    let mut t = [0u16; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = ALPHABET[i >> 6] as u16 | (ALPHABET[i & 63] as u16) << 8;
        i += 1;
    }
    t
}

/// Padded base64 length of `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the base64 of `input` to `out`.
pub(crate) fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + encoded_len(input.len()), 0);
    encode_slice(input, &mut out[start..]);
}

/// Writes the base64 of `input` to `out`, which is exactly `encoded_len(input.len())` long.
fn encode_slice(input: &[u8], out: &mut [u8]) {
    // Six input bytes make eight characters; each step reads eight bytes (one u64), so it
    // needs two more input bytes than it consumes.
    let mut i = 0;
    let mut o = 0;
    while i + 8 <= input.len() {
        let Some(word) = input
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        else {
            break;
        };
        let n = u64::from_be_bytes(word);
        let packed = u64::from(PAIRS[(n >> 52) as usize & 0xfff])
            | u64::from(PAIRS[(n >> 40) as usize & 0xfff]) << 16
            | u64::from(PAIRS[(n >> 28) as usize & 0xfff]) << 32
            | u64::from(PAIRS[(n >> 16) as usize & 0xfff]) << 48;
        if let Some(dst) = out.get_mut(o..o + 8) {
            dst.copy_from_slice(&packed.to_le_bytes());
        }
        i += 6;
        o += 8;
    }
    // The rest, three bytes (four characters) at a time, then the padded tail.
    let out_len = out.len();
    let (rest_in, rest_out) = (&input[i.min(input.len())..], &mut out[o.min(out_len)..]);
    let mut groups = rest_in.chunks_exact(3);
    let mut dsts = rest_out.chunks_exact_mut(4);
    for (src, dst) in (&mut groups).zip(&mut dsts) {
        let n = usize::from(src[0]) << 16 | usize::from(src[1]) << 8 | usize::from(src[2]);
        dst[..2].copy_from_slice(&PAIRS[n >> 12].to_le_bytes());
        dst[2..].copy_from_slice(&PAIRS[n & 0xfff].to_le_bytes());
    }
    let tail = groups.remainder();
    if let Some(dst) = dsts.next() {
        let b0 = usize::from(tail.first().copied().unwrap_or(0));
        let b1 = usize::from(tail.get(1).copied().unwrap_or(0));
        let n = b0 << 16 | b1 << 8;
        dst[0] = ALPHABET[n >> 18];
        dst[1] = ALPHABET[(n >> 12) & 63];
        dst[2] = if tail.len() == 2 {
            ALPHABET[(n >> 6) & 63]
        } else {
            b'='
        };
        dst[3] = b'=';
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
                encode_into(input, &mut out);
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
        encode_into(&every_value, &mut out);
        assert_eq!(out, reference(&every_value).as_bytes());
    }

    proptest! {
        #[test]
        fn random_input_matches_the_base64_crate(input in prop::collection::vec(any::<u8>(), 0..=4096)) {
            let mut out = Vec::new();
            encode_into(&input, &mut out);
            prop_assert_eq!(out, reference(&input).into_bytes());
        }
    }
}
