use super::*;
use serde_json::Value;

const SECRET: [u8; 32] = [7u8; 32];

fn sealer(room: &str, epoch: u64) -> RoomSealer {
    RoomSealer::new(
        room,
        epoch,
        &RoomSecret::from_bytes(&SECRET),
        AeadBackend::default(),
    )
    .expect("sealer")
}

fn keyring(room: &str, epoch: u64) -> RoomKeyring {
    let mut ring = RoomKeyring::new();
    let key = RoomSecret::from_bytes(&SECRET).to_base64();
    ring.grant(room, epoch, &key, AeadBackend::default())
        .expect("grant");
    ring
}

/// `(room, epoch, seq, ct)` of a sealed frame, parsed as a client would.
fn fields(frame: &str) -> (String, u64, u64, String) {
    let v: Value = serde_json::from_str(frame).expect("frame is JSON");
    assert_eq!(v["event"], FRAME_EVENT);
    let d = &v["data"];
    (
        d["room"].as_str().expect("room").to_owned(),
        d["epoch"].as_u64().expect("epoch"),
        d["seq"].as_u64().expect("seq"),
        d["ct"].as_str().expect("ct").to_owned(),
    )
}

#[test]
fn round_trip_with_gaps_but_never_backwards() {
    let mut s = sealer("orders:\"eu\"", 3);
    let mut ring = keyring("orders:\"eu\"", 3);
    let frames: Vec<String> = (0..4)
        .map(|i| s.seal_frame(format!(r#"{{"event":"e","data":{i}}}"#).as_bytes()))
        .collect::<Result<_, _>>()
        .expect("seal");
    assert_eq!(s.sealed(), 4);
    // 0, then 2 (1 skipped: a member left out of one publication), then 3.
    for i in [0usize, 2, 3] {
        let (room, epoch, seq, ct) = fields(&frames[i]);
        assert_eq!(seq, i as u64);
        let pt = ring.open(&room, epoch, seq, &ct).expect("opens");
        assert_eq!(pt, format!(r#"{{"event":"e","data":{i}}}"#).into_bytes());
    }
    // Replayed (3 again) and reordered (1 after 3) records are refused.
    for i in [3usize, 1] {
        let (room, epoch, seq, ct) = fields(&frames[i]);
        assert_eq!(ring.open(&room, epoch, seq, &ct), Err(CryptoError::Decrypt));
    }
}

#[test]
fn tampering_and_rebinding_fail() {
    let mut s = sealer("r", 1);
    let frame = s.seal_frame(br#"{"event":"e","data":1}"#).expect("seal");
    let (room, epoch, seq, ct) = fields(&frame);
    let mut ring = keyring("r", 1);
    // Another room with the same key: the AAD binds the room name.
    let mut other = keyring("s", 1);
    assert!(other.open("s", epoch, seq, &ct).is_err());
    // Another epoch number, another sequence number: both in the AAD and nonce.
    assert!(ring.open(&room, epoch + 1, seq, &ct).is_err());
    assert!(ring.open(&room, epoch, seq + 1, &ct).is_err());
    // A flipped bit, a truncated tag, not base64.
    let mut raw = b64().decode(&ct).expect("b64");
    raw[0] ^= 1;
    assert!(ring.open(&room, epoch, seq, &b64().encode(&raw)).is_err());
    raw[0] ^= 1;
    assert!(
        ring.open(&room, epoch, seq, &b64().encode(&raw[..raw.len() - 1]))
            .is_err()
    );
    assert!(ring.open(&room, epoch, seq, "%%%").is_err());
    // None of that moved the state: the genuine record still opens.
    assert!(ring.open(&room, epoch, seq, &ct).is_ok());
}

#[test]
fn a_new_epoch_replaces_the_old_one_and_never_goes_back() {
    let mut old = sealer("r", 1);
    let old_frame = old.seal_frame(b"{}").expect("seal");
    let mut ring = keyring("r", 1);
    let next = RoomSecret::random(&mut rand::rng());
    ring.grant("r", 2, &next.to_base64(), AeadBackend::default())
        .expect("grant");
    assert_eq!(ring.epoch("r"), Some(2));
    // The old epoch's records no longer open.
    let (room, epoch, seq, ct) = fields(&old_frame);
    assert!(ring.open(&room, epoch, seq, &ct).is_err());
    // A grant for an epoch not above the current one is refused, and changes nothing.
    let key = RoomSecret::from_bytes(&SECRET).to_base64();
    assert!(ring.grant("r", 2, &key, AeadBackend::default()).is_err());
    assert!(ring.grant("r", 1, &key, AeadBackend::default()).is_err());
    assert_eq!(ring.epoch("r"), Some(2));
    // Bad keys are refused.
    assert!(ring.grant("r", 3, "AAAA", AeadBackend::default()).is_err());
    ring.forget("r");
    assert_eq!(ring.epoch("r"), None);
}

#[test]
fn backends_agree() {
    let secret = RoomSecret::from_bytes(&SECRET);
    let mut a = RoomSealer::new("r", 9, &secret, AeadBackend::AwsLc).expect("sealer");
    let mut b = RoomSealer::new("r", 9, &secret, AeadBackend::RustCrypto).expect("sealer");
    for i in 0..3 {
        let pt = format!(r#"{{"event":"e","data":"{}"}}"#, "x".repeat(i * 100));
        assert_eq!(
            a.seal_frame(pt.as_bytes()).expect("seal"),
            b.seal_frame(pt.as_bytes()).expect("seal")
        );
    }
}

#[test]
fn grant_json_is_the_documented_event() {
    let secret = RoomSecret::from_bytes(&SECRET);
    let json = grant_json("a\"b", 5, &secret);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["event"], GRANT_EVENT);
    assert_eq!(v["data"]["room"], "a\"b");
    assert_eq!(v["data"]["epoch"], 5);
    assert_eq!(v["data"]["key"], b64().encode(SECRET));
}

#[test]
fn aad_layout() {
    let a = aad("ab", 1, 2).expect("aad");
    let mut want = b"sealwire-room-v1".to_vec();
    want.extend_from_slice(&[0, 2, b'a', b'b']);
    want.extend_from_slice(&1u64.to_be_bytes());
    want.extend_from_slice(&2u64.to_be_bytes());
    assert_eq!(a, want);
    assert!(aad(&"x".repeat(70_000), 0, 0).is_err());
}

#[test]
fn the_binary_form_is_the_text_form_without_json_or_base64() {
    let room = "orders:é";
    let mut s = sealer(room, 9);
    let mut text_ring = keyring(room, 9);
    let mut binary_ring = keyring(room, 9);
    for i in 0..3u64 {
        let pt = format!(r#"{{"event":"e","data":{i}}}"#);
        let frames = s.seal(pt.as_bytes()).expect("seal");
        let record = BinaryRecord::parse(&frames.binary).expect("parses");
        assert_eq!((record.room, record.epoch, record.seq), (room, 9, i));
        // The same record: the ciphertext is the text frame's, and the header is its AAD.
        let (_, _, _, ct) = fields(&frames.text);
        assert_eq!(b64().encode(record.ct), ct);
        assert_eq!(record.aad(), aad(room, 9, i).expect("aad"));
        assert_eq!(frames.binary[0], binary::RECORD_TYPE);
        assert_eq!(
            frames.binary.len(),
            binary::header_len(room.len()) + pt.len() + TAG_LEN
        );
        assert_eq!(
            binary_ring.open_binary(&record).expect("opens"),
            pt.as_bytes()
        );
        assert_eq!(
            text_ring.open(room, 9, i, &ct).expect("opens"),
            pt.as_bytes()
        );
        // Replayed: refused.
        assert_eq!(binary_ring.open_binary(&record), Err(CryptoError::Decrypt));
    }
}

#[test]
fn a_binary_record_with_any_byte_changed_does_not_open() {
    let frames = sealer("r", 1)
        .seal(br#"{"event":"e","data":1}"#)
        .expect("seal");
    for at in 0..frames.binary.len() {
        let mut bad = frames.binary.clone();
        bad[at] ^= 0x01;
        let mut ring = keyring("r", 1);
        let opened = BinaryRecord::parse(&bad).and_then(|r| ring.open_binary(&r));
        assert!(opened.is_err(), "byte {at} flipped still opened");
    }
    // The untouched record opens (the loop above refused for the flip, not the key).
    let record = BinaryRecord::parse(&frames.binary).expect("parses");
    assert!(keyring("r", 1).open_binary(&record).is_ok());
}

#[test]
fn malformed_binary_records_are_refused_without_panicking() {
    let frames = sealer("room", 1).seal(b"{}").expect("seal");
    // Every truncation short of a header and a tag (a longer one is a record whose tag fails),
    // an unknown type byte, a room name that is not UTF-8.
    for len in 0..binary::header_len(4) + TAG_LEN {
        assert!(BinaryRecord::parse(&frames.binary[..len]).is_err(), "{len}");
    }
    let mut kind = frames.binary.clone();
    kind[0] = 0x02;
    assert!(BinaryRecord::parse(&kind).is_err());
    let mut name = frames.binary.clone();
    name[3] = 0xff;
    assert!(BinaryRecord::parse(&name).is_err());
    // A length prefix that points past the end.
    assert!(BinaryRecord::parse(&[1, 0xff, 0xff, b'a']).is_err());
}

#[test]
fn a_room_name_starting_with_a_byte_order_mark_keeps_it_in_both_forms() {
    let room = "\u{feff}a";
    let frames = sealer(room, 2)
        .seal(br#"{"event":"e","data":1}"#)
        .expect("seal");
    let record = BinaryRecord::parse(&frames.binary).expect("parses");
    assert_eq!(record.room, room);
    assert!(keyring(room, 2).open_binary(&record).is_ok());
    let (text_room, ..) = fields(&frames.text);
    assert_eq!(text_room, room);
}
