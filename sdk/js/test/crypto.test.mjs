// The SDK's crypto against the published vectors (tests/vectors), and its refusals:
// tampering, replay, reordering, reflection, downgrade, unpinned or forged identities.
// Hardened: the `sealwire-v2` flow of the vector (client hello, server hello, confirmation,
// sealed authenticate and connected, traffic across epochs, a refresh) reproduced byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { ClientHandshake, CryptoError, HARDENED_PROFILE } from "../src/index.js";
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
