//! Differential tests: the two AES-256-GCM implementations behind [`SessionKey`] must agree
//! byte for byte, open each other's output, and reject the same forgeries.

use proptest::prelude::*;

use super::*;

const BACKENDS: [AeadBackend; 2] = [AeadBackend::RustCrypto, AeadBackend::AwsLc];

fn sealed_to(
    backend: AeadBackend,
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    pt: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; pt.len() + TAG_LEN];
    SessionKey::new(key, backend)
        .seal_to(nonce, aad, pt, &mut out)
        .expect("seal_to");
    out
}

fn opened(
    backend: AeadBackend,
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut buf = sealed.to_vec();
    SessionKey::new(key, backend).open_in_place(nonce, aad, &mut buf)?;
    Ok(buf)
}

/// Plaintext lengths: anything up to 4 KiB, weighted towards block and tag boundaries.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![
            0usize, 1, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 95, 96, 97, 127, 128, 129, 255,
            256, 257, 511, 512, 513, 1023, 1024, 1025, 4095, 4096,
        ]),
        0usize..=4096,
    ]
}

fn case() -> impl Strategy<Value = ([u8; 32], [u8; NONCE_LEN], Vec<u8>, Vec<u8>)> {
    (
        any::<[u8; 32]>(),
        any::<[u8; NONCE_LEN]>(),
        prop::collection::vec(any::<u8>(), 0..=64),
        length().prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn backends_agree_and_open_each_other((key, nonce, aad, pt) in case()) {
        let reference = sealed_to(AeadBackend::RustCrypto, &key, &nonce, &aad, &pt);
        prop_assert_eq!(reference.len(), pt.len() + TAG_LEN);
        for backend in BACKENDS {
            prop_assert_eq!(&sealed_to(backend, &key, &nonce, &aad, &pt), &reference);
            prop_assert_eq!(opened(backend, &key, &nonce, &aad, &reference).expect("opens"), pt.clone());
        }
    }

    #[test]
    fn both_backends_reject_the_same_forgeries(
        (key, nonce, aad, pt) in case(),
        bit in any::<usize>(),
        aad_bit in any::<usize>(),
    ) {
        let sealed = sealed_to(AeadBackend::AwsLc, &key, &nonce, &aad, &pt);
        // A flipped bit anywhere in the ciphertext or the tag.
        let mut flipped = sealed.clone();
        let bit = bit % (flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        // A flipped bit in the tag alone.
        let mut bad_tag = sealed.clone();
        let tag_at = sealed.len() - TAG_LEN + (bit / 8) % TAG_LEN;
        bad_tag[tag_at] ^= 0x80;
        // Different associated data: a flipped bit, or one byte more.
        let mut other_aad = aad.clone();
        if other_aad.is_empty() {
            other_aad.push(0);
        } else {
            let aad_bit = aad_bit % (other_aad.len() * 8);
            other_aad[aad_bit / 8] ^= 1 << (aad_bit % 8);
        }
        let mut other_nonce = nonce;
        other_nonce[bit % NONCE_LEN] ^= 1;
        for backend in BACKENDS {
            prop_assert_eq!(opened(backend, &key, &nonce, &aad, &flipped), Err(CryptoError::Decrypt));
            prop_assert_eq!(opened(backend, &key, &nonce, &aad, &bad_tag), Err(CryptoError::Decrypt));
            prop_assert_eq!(opened(backend, &key, &nonce, &other_aad, &sealed), Err(CryptoError::Decrypt));
            prop_assert_eq!(opened(backend, &key, &other_nonce, &aad, &sealed), Err(CryptoError::Decrypt));
            prop_assert_eq!(
                opened(backend, &key, &nonce, &aad, &sealed[..sealed.len() - 1]),
                Err(CryptoError::Decrypt)
            );
        }
    }
}

#[test]
fn too_short_and_wrong_sizes_fail_in_both() {
    let key = [3u8; 32];
    let nonce = [4u8; NONCE_LEN];
    for backend in BACKENDS {
        for len in 0..TAG_LEN {
            assert_eq!(
                opened(backend, &key, &nonce, b"", &vec![0u8; len]),
                Err(CryptoError::Decrypt),
                "{backend:?} {len}"
            );
        }
        let mut k = SessionKey::new(&key, backend);
        for out_len in [0, 4, 4 + TAG_LEN - 1, 4 + TAG_LEN + 1] {
            let mut out = vec![0u8; out_len];
            assert_eq!(
                k.seal_to(&nonce, b"", b"four", &mut out),
                Err(CryptoError::Encrypt),
                "{backend:?} {out_len}"
            );
        }
    }
}

#[test]
fn compacting_changes_nothing_but_memory() {
    for backend in BACKENDS {
        let mut a = SessionKey::new(&[7u8; 32], backend);
        let mut b = SessionKey::new(&[7u8; 32], backend);
        let nonce = [1u8; NONCE_LEN];
        let mut buf = vec![0u8; 7 + TAG_LEN];
        a.seal_to(&nonce, b"aad", b"payload", &mut buf)
            .expect("seal");
        assert!(a.is_expanded());
        a.compact();
        assert!(!a.is_expanded());
        let mut again = vec![0u8; 7 + TAG_LEN];
        a.seal_to(&nonce, b"aad", b"payload", &mut again)
            .expect("seal");
        assert_eq!(buf, again);
        b.open_in_place(&nonce, b"aad", &mut buf).expect("open");
        assert_eq!(buf, b"payload");
        assert_eq!(
            b.open_in_place(&nonce, b"aad", &mut again[..3].to_vec()),
            Err(CryptoError::Decrypt)
        );
    }
}

#[test]
fn fastest_is_aws_lc() {
    assert_eq!(
        SessionKey::new(&[0u8; 32], AeadBackend::Fastest).backend(),
        AeadBackend::AwsLc
    );
    assert_eq!(
        SessionKey::new(&[0u8; 32], AeadBackend::RustCrypto).backend(),
        AeadBackend::RustCrypto
    );
}

/// Wycheproof's AES-GCM vectors with a 256-bit key, 96-bit nonce and 128-bit tag, through
/// both implementations: every valid case seals to the expected bytes and opens, every
/// invalid one is rejected.
#[test]
fn wycheproof_through_both_backends() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).expect("set");
    let mut checked = 0;
    for group in &set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for t in &group.tests {
            let key: [u8; 32] = t.key[..].try_into().expect("256-bit key");
            let nonce: [u8; NONCE_LEN] = t.nonce[..].try_into().expect("96-bit nonce");
            let mut expected = t.ct.to_vec();
            expected.extend_from_slice(&t.tag);
            for backend in BACKENDS {
                let got = opened(backend, &key, &nonce, &t.aad, &expected);
                if t.result.must_fail() {
                    assert_eq!(got, Err(CryptoError::Decrypt), "tc {} {backend:?}", t.tc_id);
                } else {
                    assert_eq!(got.as_deref(), Ok(&t.pt[..]), "tc {} {backend:?}", t.tc_id);
                    let sealed = sealed_to(backend, &key, &nonce, &t.aad, &t.pt);
                    assert_eq!(sealed, expected, "tc {} {backend:?}", t.tc_id);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 66);
}

/// An idle connection holds its keys compacted: the 32-byte key, the choice of
/// implementation and room for an expansion (aws-lc's 24-byte handle to its context, inline so
/// that sealing follows one pointer, not two): 64 bytes.
#[test]
fn a_compacted_key_stays_small() {
    assert!(
        std::mem::size_of::<SessionKey>() <= 64,
        "{}",
        std::mem::size_of::<SessionKey>()
    );
}
