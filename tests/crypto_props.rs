//! Property tests: seal/open round trips in both profiles (any plaintext, any interleaving of
//! directions, any rekey budget) and single-bit mutations that must always fail without
//! disturbing the receiver.

mod common;

use base64::Engine as _;
use common::hardened::{compat_pair, hardened_pair};
use proptest::prelude::*;
use sealwire::crypto::CryptoError;
use sealwire::protocol::EncryptedPayload;

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

fn mutate(p: &EncryptedPayload, in_iv: bool, bit: usize) -> EncryptedPayload {
    let field = if in_iv { &p.iv } else { &p.ct };
    let mut raw = b64().decode(field).expect("b64");
    let bit = bit % (raw.len() * 8);
    raw[bit / 8] ^= 1 << (bit % 8);
    let mut out = p.clone();
    if in_iv {
        out.iv = b64().encode(raw);
    } else {
        out.ct = b64().encode(raw);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compat_round_trips(msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..8)) {
        let (mut s, mut c) = compat_pair();
        for m in &msgs {
            let p = s.seal(m).expect("seal");
            prop_assert_eq!(&c.open(&p).expect("open"), m);
            let q = c.seal(m).expect("seal");
            prop_assert_eq!(&s.open(&q).expect("open"), m);
        }
    }

    #[test]
    fn hardened_round_trips_any_interleaving(
        rekey in 1u32..5,
        script in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..256)), 1..24),
    ) {
        let (mut s, mut c) = hardened_pair(rekey);
        for (down, m) in &script {
            let (tx, rx) = if *down { (&mut s, &mut c) } else { (&mut c, &mut s) };
            let p = tx.seal(m).expect("seal");
            prop_assert_eq!(&rx.open(&p).expect("open"), m);
        }
    }

    #[test]
    fn single_bit_mutations_always_fail(
        hardened in any::<bool>(),
        msg in prop::collection::vec(any::<u8>(), 0..256),
        in_iv in any::<bool>(),
        bit in any::<usize>(),
    ) {
        let (mut s, mut c) = if hardened { hardened_pair(2) } else { compat_pair() };
        let p = s.seal(&msg).expect("seal");
        let bad = mutate(&p, in_iv, bit);
        prop_assert_eq!(c.open(&bad), Err(CryptoError::Decrypt));
        prop_assert_eq!(c.open(&p).expect("genuine still opens"), msg);
    }
}
