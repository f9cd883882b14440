//! Known-answer tests against external vector sets: Wycheproof ECDH secp256r1 (raw
//! uncompressed-point set), AES-256-GCM and HKDF-SHA256, and RFC 5869. One generic runner per
//! family; every runner asserts how many vectors it checked, so an empty loop fails.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sealwire::crypto::{Backend, EphemeralSecret, PeerPublicKey, kdf};
use sha2::Sha256;
use wycheproof::TestResult;

/// Tallies of one run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    accepted: usize,
    rejected: usize,
}

/// Wycheproof scalars may carry a leading 0x00 (33 bytes) or be shorter than 32 bytes.
fn scalar32(raw: &[u8]) -> [u8; 32] {
    let trimmed: Vec<u8> = raw.iter().copied().skip_while(|b| *b == 0).collect();
    assert!(trimmed.len() <= 32, "scalar too long");
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(&trimmed);
    out
}

fn run_ecdh(name: wycheproof::ecdh::TestName) -> Tally {
    let set = wycheproof::ecdh::TestSet::load(name).expect("wycheproof set");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            let parsed = PeerPublicKey::from_bytes(&t.public_key);
            if matches!(t.public_key.first(), Some(0x02 | 0x03)) {
                assert!(
                    parsed.is_err(),
                    "tc {id}: compressed point must be rejected"
                );
            }
            let Ok(peer) = parsed else {
                assert!(
                    t.result != TestResult::Valid,
                    "tc {id}: valid key rejected ({})",
                    t.comment
                );
                tally.rejected += 1;
                continue;
            };
            let secret = EphemeralSecret::from_bytes(&scalar32(&t.private_key)).expect("scalar");
            let reference = Backend::RustCrypto.agree(&secret, &peer);
            let fast = Backend::AwsLc.agree(&secret, &peer);
            match (reference, fast) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(*a, *b, "tc {id}: backends disagree");
                    assert!(!t.result.must_fail(), "tc {id}: invalid case accepted");
                    assert_eq!(&a[..], &t.shared_secret[..], "tc {id}: wrong shared secret");
                    tally.accepted += 1;
                }
                (Err(_), Err(_)) => {
                    assert!(t.result.must_fail(), "tc {id}: valid case failed");
                    tally.rejected += 1;
                }
                _ => panic!("tc {id}: backends disagree on validity"),
            }
        }
    }
    tally
}

#[test]
fn wycheproof_ecdh_secp256r1_uncompressed_points() {
    let tally = run_ecdh(wycheproof::ecdh::TestName::EcdhSecp256r1Ecpoint);
    // 355 vectors: 330 valid; 16 invalid uncompressed points, 8 compressed points (one of them
    // "acceptable" elsewhere, refused by our wire format) and 1 empty key are all rejected.
    assert_eq!(
        tally,
        Tally {
            accepted: 330,
            rejected: 25
        }
    );
}

fn run_aes_gcm(set: &wycheproof::aead::TestSet) -> Tally {
    let mut tally = Tally::default();
    for group in &set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for t in &group.tests {
            let id = t.tc_id;
            let cipher = Aes256Gcm::new_from_slice(&t.key).expect("256-bit key");
            let nonce: [u8; 12] = t.nonce[..].try_into().expect("96-bit nonce");
            let mut sealed = t.pt.to_vec();
            cipher
                .encrypt_in_place(&Nonce::from(nonce), &t.aad, &mut sealed)
                .expect("encrypt");
            let mut expected = t.ct.to_vec();
            expected.extend_from_slice(&t.tag);
            let mut buf = expected.clone();
            let opened = cipher.decrypt_in_place(&Nonce::from(nonce), &t.aad, &mut buf);
            if t.result.must_fail() {
                assert!(opened.is_err(), "tc {id}: forged ciphertext opened");
                assert_ne!(sealed, expected, "tc {id}");
                tally.rejected += 1;
            } else {
                assert_eq!(sealed, expected, "tc {id}: ciphertext");
                opened.expect("valid ciphertext opens");
                assert_eq!(buf, &t.pt[..], "tc {id}: plaintext");
                tally.accepted += 1;
            }
        }
    }
    tally
}

#[test]
fn wycheproof_aes_256_gcm() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).expect("set");
    assert_eq!(
        run_aes_gcm(&set),
        Tally {
            accepted: 39,
            rejected: 27
        }
    );
}

fn run_hkdf(set: &wycheproof::hkdf::TestSet) -> (Tally, usize) {
    let mut tally = Tally::default();
    let mut via_kdf = 0;
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            let hk = Hkdf::<Sha256>::new(Some(&t.salt), &t.ikm);
            let mut okm = vec![0u8; t.size];
            match hk.expand(&t.info, &mut okm) {
                Ok(()) => {
                    assert!(!t.result.must_fail(), "tc {id}: oversized output accepted");
                    assert_eq!(okm, &t.okm[..], "tc {id}");
                    tally.accepted += 1;
                }
                Err(_) => {
                    assert!(t.result.must_fail(), "tc {id}: valid size refused");
                    tally.rejected += 1;
                }
            }
            if t.size == 32 && !t.result.must_fail() {
                // Our own entry point: salt, ikm, info -> 32 bytes.
                assert_eq!(
                    &kdf::derive_key(&t.salt, &t.ikm, &t.info)[..],
                    &t.okm[..],
                    "tc {id}"
                );
                via_kdf += 1;
            }
        }
    }
    (tally, via_kdf)
}

#[test]
fn wycheproof_hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).expect("set");
    let (tally, via_kdf) = run_hkdf(&set);
    assert_eq!(
        tally,
        Tally {
            accepted: 83,
            rejected: 3
        }
    );
    assert_eq!(via_kdf, 12);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// RFC 5869 appendix A, SHA-256 cases (A.1-A.3): ikm, salt, info, prk, okm.
const RFC5869: [(&str, &str, &str, &str, &str); 3] = [
    (
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
         202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
         404142434445464748494a4b4c4d4e4f",
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
         808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
         a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
         d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
         f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
         59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
         cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        "",
        "",
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
];

#[test]
fn rfc5869_sha256_cases() {
    let mut n = 0;
    for (i, (ikm, salt, info, prk, okm)) in RFC5869.iter().enumerate() {
        let (ikm, salt, info, prk, okm) =
            (unhex(ikm), unhex(salt), unhex(info), unhex(prk), unhex(okm));
        let (got_prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(&got_prk[..], &prk[..], "case {}: prk", i + 1);
        let mut got = vec![0u8; okm.len()];
        hk.expand(&info, &mut got).expect("expand");
        assert_eq!(got, okm, "case {}: okm", i + 1);
        assert_eq!(
            &kdf::derive_key(&salt, &ikm, &info)[..],
            &okm[..32],
            "case {}",
            i + 1
        );
        n += 1;
    }
    assert_eq!(n, 3);
}
