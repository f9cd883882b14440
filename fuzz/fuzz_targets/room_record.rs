//! Room records from the network (`docs/PROTOCOL.md` §14.6): attacker-controlled binary
//! messages for a member holding one epoch's key. Oracle: nothing panics, and a message that
//! is not byte-identical to the genuine record never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwire::crypto::AeadBackend;
use sealwire::crypto::room::{BinaryRecord, RoomKeyring, RoomSealer, RoomSecret};

const ROOM: &str = "orders:eu";
const EPOCH: u64 = 7;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let secret = RoomSecret::from_bytes(&[0x5c; 32]);
    let mut sealer = RoomSealer::new(ROOM, EPOCH, &secret, AeadBackend::default()).expect("sealer");
    let genuine = sealer
        .seal(br#"{"event":"order","data":{"id":1}}"#)
        .expect("seal")
        .binary;
    let candidate = if mode & 1 == 0 {
        // Structured: the input XOR-ed into the genuine record, optionally cut short.
        let mut bytes = genuine.clone();
        for (i, b) in rest.iter().enumerate() {
            let at = i % bytes.len();
            bytes[at] ^= b;
        }
        if mode & 2 != 0 {
            bytes.truncate(rest.len() % (bytes.len() + 1));
        }
        bytes
    } else {
        // Anything at all.
        rest.to_vec()
    };
    let mut keyring = RoomKeyring::new();
    keyring
        .grant(ROOM, EPOCH, &secret.to_base64(), AeadBackend::default())
        .expect("grant");
    let opened = BinaryRecord::parse(&candidate).and_then(|r| keyring.open_binary(&r));
    if opened.is_ok() {
        assert_eq!(candidate, genuine, "a record that is not the genuine one opened");
    }
});
