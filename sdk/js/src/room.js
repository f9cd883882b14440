// Room keys (`sealwire-room-v1`, docs/PROTOCOL.md section 14), the member's side on WebCrypto:
// a hardened-profile server seals a publication to a room once, under the key of the room's
// current *epoch*, and hands each member the epoch's secret inside that member's own record
// layer.
//
//   grant      room-key {room, epoch, key: b64(secret)}        (inside a sealed s2c record)
//   key        = HKDF-Expand(secret, "sealwire-room-v1 key", 32)
//   prefix     = HKDF-Expand(secret, "sealwire-room-v1 iv", 4)
//   nonce      = prefix || u64(seq)                            seq = 0, 1, 2, ... per epoch
//   aad        = "sealwire-room-v1" || u16(len(room)) || room || u64(epoch) || u64(seq)
//   record     room-encrypted {room, epoch, seq, ct: b64(ct || tag)}   (outside any session)
//   or, when the sealed connected agreed to `roomRecords: "binary"` (section 14.6), one binary
//   message: 0x01 || u16(len(room)) || room || u64(epoch) || u64(seq) || ct || tag
//
// The keyring holds, per room, the latest epoch granted and the last `seq` accepted in it. The
// epoch secret's bytes never outlive `grant`: they are wiped once the AES key (a
// non-extractable CryptoKey) and the nonce prefix are derived, and the keyring keeps both in a
// private field. (The grant's record bytes are wiped once decoded, but the base64 text of the
// secret is a JavaScript string, which cannot be wiped: it lasts until it is collected.)

import { bigEndian, concat, fromBase64, fromUtf8Exact, lengthPrefixed, takeUtf8, utf8 } from "./encoding.js";
import { CryptoError, defaultSubtle, expandSecret } from "./crypto.js";

/** Wire id of the extension: the `roomKeys` value of the sealed `authenticate` and `connected`. */
export const ROOM_KEYS = "sealwire-room-v1";
/** S->C, inside the member's own record layer: the secret of a room's new epoch. */
export const ROOM_KEY_EVENT = "room-key";
/** S->C, outside any per-client record layer: a publication sealed under a room epoch's key. */
export const ROOM_ENCRYPTED_EVENT = "room-encrypted";
/** The `roomRecords` value of the sealed `authenticate` and `connected` that agrees to binary
 * room records (section 14.6). */
export const ROOM_RECORDS_BINARY = "binary";
/** The first byte of a binary room record. */
export const BINARY_RECORD_TYPE = 0x01;
/** Records sealed under one epoch key at most (the server moves to a new epoch long before). */
export const MAX_EPOCH_RECORDS = 2 ** 32;

const SECRET_LEN = 32;
const TAG_LEN = 16;
const MAX_ROOM_BYTES = 0xffff;

const label = {
  key: utf8("sealwire-room-v1 key"),
  iv: utf8("sealwire-room-v1 iv"),
  aad: utf8("sealwire-room-v1"),
};

/**
 * Events that mean something to the client itself: a room record carrying one of them is
 * refused (a room key is shared by every member, so a room record must never speak for the
 * protocol of one connection).
 */
const SYSTEM_EVENTS = new Set([
  "authenticate",
  "connected",
  "encrypted",
  "error",
  "hello",
  "recovered",
  "refreshed",
  ROOM_KEY_EVENT,
  ROOM_ENCRYPTED_EVENT,
]);

const isCount = (n) => Number.isSafeInteger(n) && n >= 0;

/** The AAD of record `seq` of `epoch` in `room`, or `null` for a room name over 65535 bytes. */
function roomAad(room, epoch, seq) {
  const name = utf8(room);
  if (name.length > MAX_ROOM_BYTES) return null;
  return concat(label.aad, lengthPrefixed(name), bigEndian(epoch, 8), bigEndian(seq, 8));
}

/**
 * The fields of a binary room record (section 14.6): `{room, epoch, seq, ct}` with `ct` the
 * bytes of ciphertext || tag, ready for `RoomKeyring.open`; `null` for anything that is not
 * one (another type byte, a header cut short, a room name that is not UTF-8, an epoch past
 * 2^53, a ciphertext shorter than a tag). The header is the record's AAD after its label, so
 * the fields are checked by the tag when the record is opened.
 * @param {Uint8Array} bytes
 */
export function parseBinaryRoomRecord(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length < 3 || bytes[0] !== BINARY_RECORD_TYPE) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const roomLen = view.getUint16(1);
  const end = 3 + roomLen + 16;
  if (bytes.length < end + TAG_LEN) return null;
  let room;
  try {
    // Exact: a room name may start with U+FEFF, which the default decoder would drop.
    room = fromUtf8Exact(bytes.subarray(3, 3 + roomLen));
  } catch {
    return null;
  }
  // The name must encode back to the very bytes the record's AAD holds.
  if (utf8(room).length !== roomLen) return null;
  const epoch = view.getBigUint64(3 + roomLen);
  const seq = view.getBigUint64(3 + roomLen + 8);
  if (epoch > BigInt(Number.MAX_SAFE_INTEGER) || seq > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return { room, epoch: Number(epoch), seq: Number(seq), ct: bytes.slice(end) };
}

/** The AES-256-GCM key (non-extractable, decrypt only) and nonce prefix of an epoch secret
 * (wiped here). */
async function expandRoomSecret(subtle, secret) {
  const { key, prefix } = await expandSecret(subtle, secret, label.key, label.iv, ["decrypt"]);
  return { key, prefix };
}

/**
 * A member's room keys: the current epoch of each room whose key it was granted. One per
 * connection (a reconnect is granted every epoch again). Every failure is a
 * `CryptoError`: `encoding` for a malformed grant, `decrypt` for anything else.
 */
/** An event name as the protocol allows it: 1 to 256 characters (section 3). */
function isEventName(name) {
  if (typeof name !== "string" || name.length === 0) return false;
  // At most two UTF-16 units a character: only a long name needs counting.
  return name.length <= 256 || [...name].length <= 256;
}

export class RoomKeyring {
  /** `room -> {epoch, key, prefix, lastSeq}`; `lastSeq` is -1 before the first record. */
  #rooms = new Map();
  #subtle;

  /** @param {{subtle?: SubtleCrypto}} [options] */
  constructor(options = {}) {
    this.#subtle = options.subtle ?? defaultSubtle();
  }

  /**
   * Takes a grant (received inside the member's own record layer): `epoch` of `room`
   * replaces whatever the keyring held for that room. Refuses an epoch that does not move
   * forward (`decrypt`: the server never goes back) and a key that is not base64 of 32
   * bytes (`encoding`).
   */
  async grant(room, epoch, key) {
    if (typeof room !== "string" || !isCount(epoch)) {
      throw new CryptoError("encoding", "a grant needs a room name and an epoch number");
    }
    if (epoch <= (this.#rooms.get(room)?.epoch ?? -1)) {
      throw new CryptoError("decrypt", "a room key grant must move to a later epoch");
    }
    let secret;
    try {
      secret = fromBase64(key);
    } catch {
      throw new CryptoError("encoding", "the room key is not base64");
    }
    if (secret.length !== SECRET_LEN) {
      secret.fill(0);
      throw new CryptoError("encoding", `a room key has ${SECRET_LEN} bytes, not ${secret.length}`);
    }
    const material = await expandRoomSecret(this.#subtle, secret);
    // Checked again: another grant of the room may have landed during the derivation.
    if (epoch <= (this.#rooms.get(room)?.epoch ?? -1)) {
      throw new CryptoError("decrypt", "a room key grant must move to a later epoch");
    }
    this.#rooms.set(room, { epoch, ...material, lastSeq: -1 });
  }

  /** Forgets a room's key (after leaving it). */
  forget(room) {
    this.#rooms.delete(room);
  }

  /** The epoch held for `room`, or `undefined`. */
  epoch(room) {
    return this.#rooms.get(room)?.epoch;
  }

  /**
   * Opens a `room-encrypted` record (the frame's `data`: `{room, epoch, seq, ct}`, `ct` base64;
   * or a parsed binary record, `ct` bytes: `parseBinaryRoomRecord`) and returns
   * its application envelope, parsed. Fails with `CryptoError("decrypt")`, and changes
   * nothing, unless the keyring holds `epoch` of `room`, `seq` is above the last one accepted
   * in that epoch (gaps are allowed), the tag verifies and the plaintext is a JSON envelope
   * of an application event (not a system event).
   */
  async open(data) {
    if (typeof data !== "object" || data === null) throw new CryptoError("decrypt");
    const { room, epoch, seq } = data;
    const held = typeof room === "string" ? this.#rooms.get(room) : undefined;
    if (!held || epoch !== held.epoch || !isCount(seq) || seq <= held.lastSeq || seq >= MAX_EPOCH_RECORDS) {
      throw new CryptoError("decrypt");
    }
    const aad = roomAad(room, epoch, seq);
    let ct;
    try {
      ct = data.ct instanceof Uint8Array ? data.ct : fromBase64(data.ct);
    } catch {
      throw new CryptoError("decrypt");
    }
    if (aad === null || ct.length < TAG_LEN) throw new CryptoError("decrypt");
    const iv = concat(held.prefix, bigEndian(seq, 8));
    let envelope;
    try {
      const pt = await this.#subtle.decrypt({ name: "AES-GCM", iv, additionalData: aad, tagLength: 128 }, held.key, ct);
      envelope = JSON.parse(takeUtf8(new Uint8Array(pt)));
    } catch {
      throw new CryptoError("decrypt");
    }
    if (
      typeof envelope !== "object" ||
      envelope === null ||
      Array.isArray(envelope) ||
      !isEventName(envelope.event) ||
      SYSTEM_EVENTS.has(envelope.event)
    ) {
      throw new CryptoError("decrypt", "a room record must carry an application event");
    }
    // Checked again after the await: a newer grant, a `forget` or an overlapping open of the
    // same or a later `seq` wins.
    if (this.#rooms.get(room) !== held || seq <= held.lastSeq) throw new CryptoError("decrypt");
    held.lastSeq = seq;
    return envelope;
  }
}
