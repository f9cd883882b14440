// The SDK's crypto against the published vectors (tests/vectors), and its refusals:
// tampering, replay, reordering, reflection, downgrade, unpinned or forged identities.
// Hardened: the `sealwire-v2` flow of the vector (client hello, server hello, confirmation,
// sealed authenticate and connected, traffic across epochs, a refresh) reproduced byte for byte.
// Room keys (`sealwire-room-v1`): the keyring opens the published room records and refuses
// replays, foreign epochs and rooms, tampering, stale or malformed grants and system events.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  ClientHandshake,
  CryptoError,
  HARDENED_PROFILE,
  ROOM_KEYS,
  RoomKeyring,
  parseBinaryRoomRecord,
} from "../src/index.js";
import { fromBase64, toBase64 } from "../src/encoding.js";

const vectors = join(dirname(fileURLToPath(import.meta.url)), "../../../tests/vectors");
const load = (name) => JSON.parse(readFileSync(join(vectors, name), "utf8"));
const unhex = (s) => Uint8Array.from(s.match(/../g).map((h) => parseInt(h, 16)));

async function vectorHandshake(v, options) {
  return ClientHandshake.fromKeyPair(
    unhex(v.inputs.client_private),
    unhex(v.derived.client_public),
    options,
  );
}

/** The hardened vector's server `hello` payload, optionally patched. */
const serverHello = (v, patch = {}) => ({ ...v.flow.server_hello.data, ...patch });

async function rejects(promise, kind) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof CryptoError, `expected CryptoError, got ${err}`);
    assert.equal(err.kind, kind);
    return true;
  });
}

test("compat vector: derives the published key and opens every record", async () => {
  const v = load("compat.json");
  const hs = await vectorHandshake(v, { profile: "compat", info: v.inputs.info });
  assert.equal(hs.publicKeyBase64, toBase64(unhex(v.derived.client_public)));
  assert.equal(hs.profileId, undefined);
  const { session, confirmation } = await hs.finish(v.connected);
  assert.equal(confirmation, null);
  assert.equal(v.records.length, 4);
  // One key serves both directions in this profile.
  for (const r of v.records) {
    assert.equal(await session.open(r.frame.data), r.plaintext);
  }
  // What the SDK seals, the same key opens; nonces are fresh.
  const a = JSON.parse(await session.sealFrame('{"event":"x","data":1}'));
  const b = JSON.parse(await session.sealFrame('{"event":"x","data":1}'));
  assert.notEqual(a.data.iv, b.data.iv);
  assert.equal(await session.open(a.data), '{"event":"x","data":1}');
});

test("compat: tampered, truncated or malformed records fail as decrypt errors", async () => {
  const v = load("compat.json");
  const { session } = await (await vectorHandshake(v, { profile: "compat" })).finish(v.connected);
  const good = v.records[0].frame.data;
  const ct = fromBase64(good.ct);
  ct[3] ^= 0x01;
  await rejects(session.open({ iv: good.iv, ct: toBase64(ct) }), "decrypt");
  await rejects(session.open({ iv: good.iv, ct: toBase64(fromBase64(good.ct).slice(0, 10)) }), "decrypt");
  await rejects(session.open({ iv: "AAAA", ct: good.ct }), "decrypt");
  await rejects(session.open({ iv: good.iv }), "decrypt");
  await rejects(session.open("not an object"), "decrypt");
  // A `seq` is the hardened profile's: a compatibility session refuses a record carrying one.
  await rejects(session.open({ ...good, seq: 0 }), "decrypt");
  // Still opens the untouched record afterwards.
  assert.equal(await session.open(good), v.records[0].plaintext);
});

test("hardened vector: hello, confirmation, sealed authenticate and every c2s record byte for byte", async () => {
  const v = load("hardened.json");
  const pin = serverHello(v).identityKey;
  const hs = await vectorHandshake(v, { profile: "hardened", pinnedServerKeys: [pin] });
  assert.equal(hs.profileId, HARDENED_PROFILE);
  assert.equal(HARDENED_PROFILE, "sealwire-v2");
  // The client hello: profile and public key, nothing else.
  assert.deepEqual(JSON.parse(hs.helloFrame()), v.flow.client_hello);
  assert.deepEqual(hs.helloData(), v.flow.client_hello.data);
  const { session, confirmation, id } = await hs.finishHello(serverHello(v));
  assert.equal(id, v.inputs.client_id);
  const c2s = v.records.filter((r) => r.direction === "c2s");
  // Counter nonces make the client's records deterministic: the confirmation is c2s seq 0,
  // the sealed authenticate c2s seq 1, a refresh later.
  assert.deepEqual(JSON.parse(confirmation), c2s[0].frame);
  assert.equal(JSON.parse(c2s[1].plaintext).event, "authenticate");
  assert.ok(c2s.some((r) => r.plaintext && JSON.parse(r.plaintext).event === "refresh"));
  for (const r of c2s.slice(1)) {
    assert.deepEqual(JSON.parse(await session.sealFrame(r.plaintext)), r.frame);
  }
  // The token is on the wire only inside record 1.
  const token = JSON.parse(c2s[1].plaintext).data.token;
  assert.ok(!JSON.stringify(v.flow.client_hello).includes(token));
  assert.ok(!JSON.stringify(c2s[1].frame).includes(token));
});

test("hardened vector: the sealed connected names the hello's id; every s2c record opens", async () => {
  const v = load("hardened.json");
  const hs = await vectorHandshake(v, { profile: "hardened", pinnedServerKeys: [serverHello(v).identityKey] });
  const { session, id } = await hs.finishHello(serverHello(v));
  const s2c = v.records.filter((r) => r.direction === "s2c");
  const connected = JSON.parse(await session.open(s2c[0].frame.data));
  assert.equal(connected.event, "connected");
  assert.equal(connected.data.id, id);
  assert.equal(typeof connected.data.userId, "string");
  assert.ok(!JSON.stringify(v.flow.server_hello).includes(connected.data.userId));
  // rekey_after = 2: these cross several epochs.
  assert.ok(s2c.some((r) => r.epoch >= 2));
  for (const r of s2c.slice(1)) {
    assert.equal(await session.open(r.frame.data), r.plaintext);
  }
});

test("hardened: replay, reordering, gaps, a wrong iv and reflection are refused", async () => {
  const v = load("hardened.json");
  const finish = async () =>
    (await (await vectorHandshake(v, { profile: "hardened" })).finishHello(serverHello(v))).session;
  const s2c = v.records.filter((r) => r.direction === "s2c").map((r) => r.frame.data);
  const c2s = v.records.filter((r) => r.direction === "c2s").map((r) => r.frame.data);

  let session = await finish();
  await rejects(session.open(s2c[1]), "decrypt"); // skips seq 0
  assert.equal(typeof (await session.open(s2c[0])), "string"); // state unchanged by the failure
  await rejects(session.open(s2c[0]), "decrypt"); // replay
  await rejects(session.open({ ...s2c[1], iv: s2c[0].iv }), "decrypt"); // wrong nonce
  await rejects(session.open({ ...s2c[1], seq: undefined }), "decrypt"); // no seq
  await rejects(session.open({ ...s2c[1], seq: "1" }), "decrypt"); // seq not a number
  await rejects(session.open({ ...c2s[1], seq: 1 }), "decrypt"); // reflected c2s record
  const ct = fromBase64(s2c[1].ct);
  ct[ct.length - 1] ^= 0x80;
  await rejects(session.open({ ...s2c[1], ct: toBase64(ct) }), "decrypt"); // bad tag
  assert.equal(typeof (await session.open(s2c[1])), "string");

  // A fresh session cannot open a record of a later epoch out of turn.
  session = await finish();
  await rejects(session.open(s2c[3]), "decrypt");
});

test("hardened: overlapping calls queue: a record presented twice at once opens once, seals keep their order across rekeys", async () => {
  const v = load("hardened.json");
  const finish = async () =>
    (await (await vectorHandshake(v, { profile: "hardened" })).finishHello(serverHello(v))).session;
  const s2c = v.records.filter((r) => r.direction === "s2c").map((r) => r.frame.data);
  let session = await finish();
  // The same record twice without waiting (an async onmessage handler, say): one opens.
  const twice = await Promise.allSettled([session.open(s2c[0]), session.open(s2c[0])]);
  assert.deepEqual(twice.map((r) => r.status), ["fulfilled", "rejected"]);
  assert.equal(twice[1].reason.kind, "decrypt");
  // Every s2c record at once, in order: all open (the epochs' keys are derived in turn).
  session = await finish();
  const opened = await Promise.all(s2c.map((d) => session.open(d)));
  assert.equal(opened.length, s2c.length);
  // Every c2s record sealed at once: the same bytes as one at a time, across the rekeys.
  session = await finish();
  const c2s = v.records.filter((r) => r.direction === "c2s").slice(1);
  const frames = await Promise.all(c2s.map((r) => session.sealFrame(r.plaintext)));
  assert.deepEqual(frames.map((f) => JSON.parse(f)), c2s.map((r) => r.frame));
});

test("a hello whose id does not fit its 16-bit length prefix is refused, not cut short", async () => {
  const v = load("hardened.json");
  const hs = await vectorHandshake(v, { profile: "hardened" });
  await assert.rejects(hs.finishHello(serverHello(v, { id: "x".repeat(65_536) })), RangeError);
});

test("pinned server keys need the hardened profile", async () => {
  const v = load("hardened.json");
  const pin = serverHello(v).identityKey;
  await rejects(vectorHandshake(v, { profile: "compat", pinnedServerKeys: [pin] }), "handshake");
  assert.ok(await vectorHandshake(v, { profile: "compat", pinnedServerKeys: [] }));
});

test("hardened: downgrade, wrong confirmation, bad rekeyAfter are handshake errors", async () => {
  const v = load("hardened.json");
  const hs = () => vectorHandshake(v, { profile: "hardened" });
  // A server hello without the profile, or with the retired or an unknown one.
  for (const profile of [undefined, null, "sealwire-v1", "sealwire-v3", "compat"]) {
    await rejects((await hs()).finishHello(serverHello(v, { profile })), "handshake");
  }
  const confirm = fromBase64(serverHello(v).confirm);
  confirm[0] ^= 1;
  await rejects((await hs()).finishHello(serverHello(v, { confirm: toBase64(confirm) })), "handshake");
  await rejects((await hs()).finishHello(serverHello(v, { confirm: undefined })), "handshake");
  for (const rekeyAfter of [0, 2 ** 24 + 1, 1.5, "2", undefined]) {
    await rejects((await hs()).finishHello(serverHello(v, { rekeyAfter })), "handshake");
  }
  await rejects((await hs()).finishHello(serverHello(v, { id: undefined })), "handshake");
  await rejects((await hs()).finishHello(null), "handshake");
  // A different client id changes the transcript: the signature (checked first) and the
  // confirmation no longer match.
  await rejects((await hs()).finishHello(serverHello(v, { id: "someone-else" })), "untrusted-server");
  const unsigned = { identityKey: undefined, signature: undefined };
  await rejects((await hs()).finishHello(serverHello(v, unsigned)), "handshake");
  // A hardened handshake never takes its keys from a (plaintext) connected.
  await rejects((await hs()).finish({ ...serverHello(v), userId: "u", time: "t" }), "handshake");
  // A handshake finishes once.
  const once = await hs();
  await once.finishHello(serverHello(v));
  await rejects(once.finishHello(serverHello(v)), "handshake");
  // And a compat client has no hello and refuses a connected that names a profile.
  const compat = await vectorHandshake(v, { profile: "compat" });
  assert.throws(() => compat.helloData(), (err) => err instanceof CryptoError && err.kind === "handshake");
  await rejects(compat.finishHello(serverHello(v)), "handshake");
  await rejects(compat.finish(serverHello(v)), "handshake");
});

test("hardened: pins are enforced and signatures must verify", async () => {
  const v = load("hardened.json");
  const other = await ClientHandshake.create({ profile: "hardened" }); // any other valid point
  const hs = (pins) => vectorHandshake(v, { profile: "hardened", pinnedServerKeys: pins });
  const identityKey = serverHello(v).identityKey;
  // Pinned to another key: refused even though everything else is right.
  await rejects((await hs([other.publicKeyBase64])).finishHello(serverHello(v)), "untrusted-server");
  // Pins set, no identity offered.
  await rejects(
    (await hs([identityKey])).finishHello(serverHello(v, { identityKey: undefined, signature: undefined })),
    "untrusted-server",
  );
  // Current and next pin: either works.
  const ok = await (await hs([other.publicKeyBase64, identityKey])).finishHello(serverHello(v));
  assert.ok(ok.confirmation);
  // A forged signature, or none, is refused even without pins.
  const sig = fromBase64(serverHello(v).signature);
  sig[10] ^= 1;
  await rejects((await hs([])).finishHello(serverHello(v, { signature: toBase64(sig) })), "untrusted-server");
  await rejects((await hs([])).finishHello(serverHello(v, { signature: undefined })), "untrusted-server");
  // An identity key that is not a P-256 point.
  await rejects((await hs([])).finishHello(serverHello(v, { identityKey: toBase64(new Uint8Array(65)) })), "untrusted-server");
});

test("invalid server keys and salts are refused before any key is derived", async () => {
  const v = load("compat.json");
  const hs = () => vectorHandshake(v, { profile: "compat" });
  const spk = fromBase64(v.connected.serverPublicKey);
  const compressed = new Uint8Array(33);
  compressed.set(spk.slice(0, 33));
  compressed[0] = 0x02 | (spk[64] & 1);
  const offCurve = spk.slice();
  offCurve[64] ^= 1;
  for (const bad of ["", "!!!", toBase64(spk.slice(0, 64)), toBase64(compressed), toBase64(offCurve)]) {
    await rejects((await hs()).finish({ ...v.connected, serverPublicKey: bad }), "invalid-public-key");
  }
  await rejects((await hs()).finish({ ...v.connected, salt: toBase64(new Uint8Array(31)) }), "encoding");
  await rejects((await hs()).finish({ salt: v.connected.salt }), "handshake");
  await rejects((await hs()).finish(null), "handshake");
});

test("hardened: an invalid server key or salt in the hello is refused", async () => {
  const v = load("hardened.json");
  const hs = () => vectorHandshake(v, { profile: "hardened" });
  const spk = fromBase64(serverHello(v).serverPublicKey);
  const offCurve = spk.slice();
  offCurve[64] ^= 1;
  for (const bad of ["", "!!!", toBase64(spk.slice(0, 64)), toBase64(offCurve), 42]) {
    await rejects((await hs()).finishHello(serverHello(v, { serverPublicKey: bad })), typeof bad === "string" ? "invalid-public-key" : "handshake");
  }
  await rejects((await hs()).finishHello(serverHello(v, { salt: toBase64(new Uint8Array(31)) })), "encoding");
});

test("fresh handshakes use fresh keys", async () => {
  const a = await ClientHandshake.create();
  const b = await ClientHandshake.create();
  assert.notEqual(a.publicKeyBase64, b.publicKeyBase64);
  assert.equal(fromBase64(a.publicKeyBase64).length, 65);
  assert.equal(fromBase64(a.publicKeyBase64)[0], 4);
  assert.equal(a.profileId, HARDENED_PROFILE);
  assert.deepEqual(a.helloData(), { profile: "sealwire-v2", publicKey: a.publicKeyBase64 });
});

/** The room vector's grant payload `{room, epoch, key}`. */
const roomGrant = (v) => JSON.parse(v.grant).data;

/** A keyring holding the room vector's epoch. */
async function roomKeyring(v) {
  const keyring = new RoomKeyring();
  const { room, epoch, key } = roomGrant(v);
  await keyring.grant(room, epoch, key);
  return keyring;
}

/**
 * A `room-encrypted` frame's data sealed under the room vector's secret, written here from
 * docs/PROTOCOL.md section 14 (not with the SDK): `plaintext` is a string or raw bytes.
 */
async function sealRoom(v, { room = v.room, epoch = v.epoch, seq, plaintext }) {
  const subtle = globalThis.crypto.subtle;
  const prk = await subtle.importKey("raw", unhex(v.secret_hex), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expand = async (info) =>
    new Uint8Array(await subtle.sign("HMAC", prk, Buffer.concat([Buffer.from(info), Buffer.from([1])])));
  const key = await subtle.importKey("raw", await expand("sealwire-room-v1 key"), "AES-GCM", false, ["encrypt"]);
  const be64 = (n) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    return b;
  };
  const name = Buffer.from(room);
  const len = Buffer.alloc(2);
  // Wraps for a name over 65535 bytes, as a careless sealer would (the keyring must refuse).
  len.writeUInt16BE(name.length & 0xffff);
  const iv = Buffer.concat([(await expand("sealwire-room-v1 iv")).slice(0, 4), be64(seq)]);
  const aad = Buffer.concat([Buffer.from("sealwire-room-v1"), len, name, be64(epoch), be64(seq)]);
  const pt = typeof plaintext === "string" ? Buffer.from(plaintext) : plaintext;
  const ct = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, key, pt));
  return { room, epoch, seq, ct: toBase64(ct) };
}

test("room vector: the keyring opens every published record (gaps allowed)", async () => {
  const v = load("room.json");
  assert.equal(ROOM_KEYS, v.extension);
  assert.equal(v.records.length, 3);
  let keyring = await roomKeyring(v);
  assert.equal(keyring.epoch(v.room), v.epoch);
  assert.equal(keyring.epoch("elsewhere"), undefined);
  for (const r of v.records) {
    const frame = JSON.parse(r.frame);
    assert.equal(frame.event, "room-encrypted");
    assert.deepEqual(await keyring.open(frame.data), JSON.parse(r.plaintext));
  }
  // A member excluded from a publication misses its seq: the next one still opens.
  keyring = await roomKeyring(v);
  assert.deepEqual(await keyring.open(JSON.parse(v.records[2].frame).data), JSON.parse(v.records[2].plaintext));
  // Nothing of the key is reachable from the keyring object.
  assert.deepEqual(Object.keys(keyring), []);
  assert.equal(JSON.stringify(keyring), "{}");
});

test("room vector: binary records parse to the text frames' fields and open; a malformed one parses to null", async () => {
  const v = load("room.json");
  const keyring = await roomKeyring(v);
  for (const r of v.records) {
    const bytes = new Uint8Array(Buffer.from(r.binary_hex, "hex"));
    const record = parseBinaryRoomRecord(bytes);
    const { data } = JSON.parse(r.frame);
    assert.deepEqual({ ...record, ct: toBase64(record.ct) }, data);
    assert.deepEqual(await keyring.open(record), JSON.parse(r.plaintext));
    // Replayed in either form: refused.
    await assert.rejects(keyring.open(record), CryptoError);
    await assert.rejects(keyring.open(data), CryptoError);
  }
  const bytes = new Uint8Array(Buffer.from(v.records[0].binary_hex, "hex"));
  const header = 3 + Buffer.byteLength(v.room) + 16;
  // Every cut short of a header and a tag, another type byte, a room name that is not UTF-8.
  for (let len = 0; len < header + 16; len++) assert.equal(parseBinaryRoomRecord(bytes.slice(0, len)), null, `${len}`);
  const kind = bytes.slice();
  kind[0] = 2;
  assert.equal(parseBinaryRoomRecord(kind), null);
  const name = bytes.slice();
  name[3] = 0xff;
  assert.equal(parseBinaryRoomRecord(name), null);
  // An epoch past 2^53 cannot be held exactly: refused.
  const epoch = bytes.slice();
  epoch[3 + Buffer.byteLength(v.room)] = 0x01;
  assert.equal(parseBinaryRoomRecord(epoch), null);
  assert.equal(parseBinaryRoomRecord("not bytes"), null);
  // A record with any byte changed parses to a record that does not open, or to null.
  for (let at = 0; at < bytes.length; at++) {
    const bad = bytes.slice();
    bad[at] ^= 0x01;
    const fresh = await roomKeyring(v);
    const parsed = parseBinaryRoomRecord(bad);
    if (parsed !== null) await assert.rejects(fresh.open(parsed), CryptoError, `byte ${at}`);
  }
});

test("room keys: replayed or lower seq, wrong epoch or room, tampered or truncated ct are refused", async () => {
  const v = load("room.json");
  const [r0, r1, r2] = v.records.map((r) => JSON.parse(r.frame).data);
  const keyring = await roomKeyring(v);
  const flipped = fromBase64(r1.ct);
  flipped[5] ^= 0x01;
  const tag = fromBase64(r1.ct);
  tag[tag.length - 1] ^= 0x80;
  const refusals = {
    "wrong epoch (later)": { ...r1, epoch: v.epoch + 1 },
    "wrong epoch (earlier)": { ...r1, epoch: v.epoch - 1 },
    "a room without a key": { ...r1, room: "orders:us" },
    "flipped bit in ct": { ...r1, ct: toBase64(flipped) },
    "flipped bit in the tag": { ...r1, ct: toBase64(tag) },
    "truncated ct": { ...r1, ct: toBase64(fromBase64(r1.ct).slice(0, -1)) },
    "shorter than a tag": { ...r1, ct: toBase64(fromBase64(r1.ct).slice(0, 15)) },
    "ct not base64": { ...r1, ct: "!!!!" },
    "no ct": { ...r1, ct: undefined },
    "another record's seq": { ...r1, seq: 2 },
    "seq as a string": { ...r1, seq: "1" },
    "negative seq": { ...r1, seq: -1 },
    "fractional seq": { ...r1, seq: 1.5 },
    "seq beyond 2^53": { ...r1, seq: 2 ** 53 },
    // Sealed correctly, but past the records one epoch key may seal.
    "seq at the epoch limit": await sealRoom(v, { seq: 2 ** 32, plaintext: v.records[1].plaintext }),
    "epoch as a string": { ...r1, epoch: String(v.epoch) },
    "no room": { ...r1, room: undefined },
    "not an object": null,
  };
  for (const [name, data] of Object.entries(refusals)) {
    await rejects(keyring.open(data), "decrypt").catch((err) => assert.fail(`${name}: ${err.message}`));
  }
  // None of the failures moved the state: the records open in order, then replays and
  // lower sequence numbers are refused.
  await keyring.open(r0);
  await keyring.open(r2);
  await rejects(keyring.open(r2), "decrypt"); // replay
  await rejects(keyring.open(r1), "decrypt"); // lower seq (reordered)
  await rejects(keyring.open(r0), "decrypt");
  // The AAD binds the room name: the same secret granted under another name opens nothing.
  const other = new RoomKeyring();
  await other.grant("orders:us", v.epoch, roomGrant(v).key);
  await rejects(other.open({ ...r0, room: "orders:us" }), "decrypt");
  // Two overlapping opens of one record: exactly one wins.
  const fresh = await roomKeyring(v);
  const results = await Promise.allSettled([fresh.open(r0), fresh.open(r0)]);
  assert.deepEqual(results.map((x) => x.status).sort(), ["fulfilled", "rejected"]);
});

test("room keys: stale or malformed grants are refused, a later grant replaces, forget forgets", async () => {
  const v = load("room.json");
  const { room, epoch, key } = roomGrant(v);
  const r0 = JSON.parse(v.records[0].frame).data;
  const keyring = await roomKeyring(v);
  // Not above the held epoch.
  await rejects(keyring.grant(room, epoch, key), "decrypt");
  await rejects(keyring.grant(room, epoch - 1, key), "decrypt");
  // Malformed: key length, base64, room and epoch types.
  const b64 = (n) => toBase64(new Uint8Array(n).fill(7));
  for (const bad of [b64(31), b64(33), b64(0), "!!!!", undefined, 42]) {
    await rejects(keyring.grant("other", 1, bad), "encoding");
  }
  for (const [r, e] of [[undefined, 1], [42, 1], ["other", -1], ["other", 1.5], ["other", "1"], ["other", 2 ** 53]]) {
    await rejects(keyring.grant(r, e, key), "encoding");
  }
  assert.equal(keyring.epoch("other"), undefined);
  // The refusals left the held epoch in place.
  assert.equal(keyring.epoch(room), epoch);
  await keyring.open(r0);
  // A later epoch replaces it: the earlier epoch's records no longer open.
  await keyring.grant(room, epoch + 1, b64(32));
  assert.equal(keyring.epoch(room), epoch + 1);
  await rejects(keyring.open(JSON.parse(v.records[1].frame).data), "decrypt");
  // Forgotten: nothing opens, and any epoch may be granted again.
  keyring.forget(room);
  assert.equal(keyring.epoch(room), undefined);
  await rejects(keyring.open(r0), "decrypt");
  await keyring.grant(room, epoch, key);
  assert.deepEqual(await keyring.open(r0), JSON.parse(v.records[0].plaintext));
  // Two overlapping grants of one epoch: exactly one is taken.
  const fresh = new RoomKeyring();
  const results = await Promise.allSettled([fresh.grant(room, 1, key), fresh.grant(room, 1, key)]);
  assert.deepEqual(results.map((x) => x.status).sort(), ["fulfilled", "rejected"]);
  // A room name over 65535 bytes has no AAD: its records never open.
  const long = "x".repeat(65536);
  await fresh.grant(long, epoch, key);
  await rejects(fresh.open(await sealRoom(v, { room: long, seq: 0, plaintext: v.records[0].plaintext })), "decrypt");
});

test("room keys: a room record must carry an application event", async () => {
  const v = load("room.json");
  const keyring = await roomKeyring(v);
  const system = ["connected", "room-key", "room-encrypted", "encrypted", "refreshed", "recovered", "hello", "authenticate", "error"];
  let seq = 0;
  for (const event of system) {
    const data = await sealRoom(v, { seq: seq++, plaintext: JSON.stringify({ event, data: { id: "x" } }) });
    await rejects(keyring.open(data), "decrypt").catch((err) => assert.fail(`${event}: ${err.message}`));
  }
  const named = (event) => JSON.stringify({ event, data: 1 });
  for (const plaintext of ["not json", "[1,2]", "null", '{"event":42}', '{"data":1}', new Uint8Array([0x7b, 0xff, 0x7d]), named(""), named("x".repeat(257)), named("é".repeat(257))]) {
    await rejects(keyring.open(await sealRoom(v, { seq: seq++, plaintext })), "decrypt");
  }
  // The refusals did not consume their sequence numbers; an application event opens, its name
  // up to 256 characters (counted as characters, not UTF-16 units).
  const ok = await sealRoom(v, { seq: 0, plaintext: '{"event":"order","data":{"id":9}}' });
  assert.deepEqual(await keyring.open(ok), { event: "order", data: { id: 9 } });
  const long = "😀".repeat(256);
  assert.equal((await keyring.open(await sealRoom(v, { seq: 1, plaintext: named(long) }))).event, long);
  // The test's own sealer agrees with the published vector.
  assert.equal((await sealRoom(v, { seq: 0, plaintext: v.records[0].plaintext })).ct, v.records[0].ct_b64);
});
