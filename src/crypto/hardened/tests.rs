//! Record-layer tests: lockstep ratcheting, replay and reordering, limits and wiping.

use super::*;

/// A sender and a receiver on the same secret, each on a different AES-GCM implementation.
fn pair(rekey: u32) -> (Record, Record) {
    let s = [5u8; 32];
    (
        Record::new(
            Direction::ServerToClient,
            &s,
            rekey,
            AeadBackend::RustCrypto,
        ),
        Record::new(Direction::ServerToClient, &s, rekey, AeadBackend::AwsLc),
    )
}

#[test]
fn records_ratchet_in_lockstep() {
    let (mut tx, mut rx) = pair(3);
    let mut prefixes = Vec::new();
    for i in 0..10u64 {
        let (seq, iv, ct) = tx.seal(format!("m{i}").as_bytes()).expect("seal");
        assert_eq!(seq, i);
        prefixes.push(iv[..4].to_vec());
        assert_eq!(
            rx.open(seq, &iv, ct).expect("open"),
            format!("m{i}").as_bytes()
        );
    }
    assert_eq!(tx.epoch, 3);
    assert_eq!(rx.epoch, 3);
    assert_eq!(tx.secret(), rx.secret());
    assert_ne!(prefixes[0], prefixes[3], "new epoch, new prefix");
    assert_eq!(prefixes[0], prefixes[2]);
}

#[test]
fn replay_reorder_and_direction_fail() {
    let (mut tx, mut rx) = pair(100);
    let m0 = tx.seal(b"a").expect("seal");
    let m1 = tx.seal(b"b").expect("seal");
    // Reordered: seq 1 before 0.
    assert!(rx.open(m1.0, &m1.1, m1.2.clone()).is_err());
    rx.open(m0.0, &m0.1, m0.2.clone()).expect("in order");
    // Replayed.
    assert!(rx.open(m0.0, &m0.1, m0.2.clone()).is_err());
    rx.open(m1.0, &m1.1, m1.2).expect("next");
    // Same secret, other direction: the AAD differs.
    let mut other = Record::new(
        Direction::ClientToServer,
        &[5u8; 32],
        100,
        AeadBackend::Fastest,
    );
    assert!(other.open(m0.0, &m0.1, m0.2).is_err());
}

#[test]
fn hard_limit_refuses_to_seal() {
    let (mut tx, _) = pair(DEFAULT_REKEY_AFTER);
    tx.next_seq = SEQ_HARD_LIMIT;
    assert_eq!(tx.seal(b"x").map(|_| ()), Err(CryptoError::Encrypt));
}

/// Observes, soundly, that dropping a `Zeroizing` wrapper runs `Zeroize` on its contents:
/// the probe's bytes live in a shared cell the test keeps a handle to after the drop.
#[test]
fn dropping_a_zeroizing_wrapper_wipes_its_contents() {
    use std::cell::RefCell;
    use std::rc::Rc;
    struct Probe(Rc<RefCell<[u8; 32]>>);
    impl Zeroize for Probe {
        fn zeroize(&mut self) {
            self.0.borrow_mut().zeroize();
        }
    }
    let cell = Rc::new(RefCell::new(
        *KeySchedule::derive(&[1; 32], &[2; 32], &[3; 32]).c2s,
    ));
    assert_ne!(*cell.borrow(), [0u8; 32]);
    let wrapped = Zeroizing::new(Probe(Rc::clone(&cell)));
    drop(wrapped);
    assert_eq!(*cell.borrow(), [0u8; 32], "drop wiped the key bytes");
}

#[test]
fn ratcheting_replaces_the_retired_secret() {
    let (mut tx, _) = pair(1);
    let first = *tx.secret();
    tx.seal(b"a").expect("seal");
    tx.seal(b"b").expect("seal");
    assert_ne!(tx.secret(), &first, "epoch 1 secret differs from epoch 0");
    assert_eq!(tx.epoch, 1);
}

#[test]
fn zeroize_wipes_the_epoch_secret() {
    let (mut tx, _) = pair(10);
    assert_ne!(tx.secret(), &[0u8; 32]);
    tx.zeroize();
    assert_eq!(tx.secret(), &[0u8; 32]);
    assert_eq!(tx.prefix, [0u8; 4]);
}
