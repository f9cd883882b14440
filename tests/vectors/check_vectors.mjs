// Independent check of the published vectors with WebCrypto (globalThis.crypto.subtle).
//
//   node tests/vectors/check_vectors.mjs [dir]
//
// Recomputes every derived value of compat.json, hardened.json and room.json from their
// inputs, following docs/PROTOCOL.md (hardened: `sealwire-v2`, the hello exchange and the
// sealed authenticate/connected records of section 10.1; room keys: `sealwire-room-v1`,
// section 14, and its binary records, section 14.6), and compares byte for byte. Shares no code with the Rust implementation or the
// SDK. Exits 1 on the first mismatch; prints the number of checked values.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// Node >= 19 exposes WebCrypto as globalThis.crypto; Node 16-18 as node:crypto's webcrypto.
const subtle = globalThis.crypto?.subtle ?? (await import("node:crypto")).webcrypto?.subtle;
if (!subtle) {
  console.error("WebCrypto (globalThis.crypto.subtle) is not available");
  process.exit(2);
}
const dir = process.argv[2] ?? dirname(fileURLToPath(import.meta.url));
const enc = new TextEncoder();
let checked = 0;

const hex = (u8) => Buffer.from(u8).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const b64 = (u8) => Buffer.from(u8).toString("base64");
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
const b64url = (u8) => Buffer.from(u8).toString("base64url");
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const be = (n, bytes) => {
  const out = new Uint8Array(bytes);
  let v = BigInt(n);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
};
const len16 = (u8) => concat(be(u8.length, 2), u8);

function eq(name, got, want) {
  const g = typeof got === "string" ? got : hex(got);
  if (g !== want) {
    console.error(`MISMATCH ${name}\n  got  ${g}\n  want ${want}`);
    process.exit(1);
  }
  checked++;
}

async function ecdhX(priv, ownPub, peerPub) {
  const jwk = {
    kty: "EC",
    crv: "P-256",
    d: b64url(priv),
    x: b64url(ownPub.slice(1, 33)),
    y: b64url(ownPub.slice(33, 65)),
  };
  const sk = await subtle.importKey("jwk", jwk, { name: "ECDH", namedCurve: "P-256" }, false, [
    "deriveBits",
  ]);
  const pk = await subtle.importKey("raw", peerPub, { name: "ECDH", namedCurve: "P-256" }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: pk }, sk, 256));
}

async function hkdf(salt, ikm, info, bits = 256) {
  const k = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(
    await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, k, bits),
  );
}

async function hmac(key, data) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}

// HKDF-Expand for outputs of at most 32 bytes: T(1) = HMAC(prk, info || 0x01).
async function expand(prk, info, len) {
  return (await hmac(prk, concat(info, new Uint8Array([1])))).slice(0, len);
}

async function gcm(key, iv, aad, pt) {
  const k = await subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
  const params = { name: "AES-GCM", iv, tagLength: 128 };
  if (aad.length) params.additionalData = aad;
  const ct = new Uint8Array(await subtle.encrypt(params, k, pt));
  const back = new Uint8Array(await subtle.decrypt(params, k, ct));
  if (hex(back) !== hex(pt)) throw new Error("AES-GCM round trip failed");
  return ct;
}

/** The payload that carries the server's key: `connected` (compat) or the server `hello`
 * (hardened, section 10.1). */
async function checkHandshakeCommon(v, name, payload) {
  const d = v.derived;
  const cPriv = unhex(v.inputs.client_private);
  const sPriv = unhex(v.inputs.server_private);
  const cPub = unhex(d.client_public);
  const sPub = unhex(d.server_public);
  eq(`${name}.serverPublicKey`, unb64(payload.serverPublicKey), d.server_public);
  eq(`${name}.salt`, unb64(payload.salt), v.inputs.salt);
  // ECDH from both sides.
  eq("ecdh_x (client side)", await ecdhX(cPriv, cPub, sPub), d.ecdh_x);
  eq("ecdh_x (server side)", await ecdhX(sPriv, sPub, cPub), d.ecdh_x);
}

function checkFrame(r) {
  eq("frame.event", r.frame.event, "encrypted");
  eq("frame.iv", unb64(r.frame.data.iv), r.nonce);
  eq("frame.ct", unb64(r.frame.data.ct), r.ciphertext + r.tag);
  if (r.seq !== undefined) eq("frame.seq", String(r.frame.data.seq), String(r.seq));
}

async function checkCompat(v) {
  await checkHandshakeCommon(v, "connected", v.connected);
  const d = v.derived;
  const key = await hkdf(unhex(v.inputs.salt), unhex(d.ecdh_x), enc.encode(v.inputs.info));
  eq("compat key", key, d.key);
  for (const r of v.records) {
    const ct = await gcm(key, unhex(r.nonce), new Uint8Array(), enc.encode(r.plaintext));
    eq(`compat ${r.direction} ct||tag`, ct, r.ciphertext + r.tag);
    checkFrame(r);
  }
}

const sameJson = (name, got, want) => eq(name, JSON.stringify(sortKeys(got)), JSON.stringify(sortKeys(want)));
function sortKeys(x) {
  if (Array.isArray(x)) return x.map(sortKeys);
  if (x && typeof x === "object") {
    return Object.fromEntries(Object.keys(x).sort().map((k) => [k, sortKeys(x[k])]));
  }
  return x;
}

async function checkHardened(v) {
  const d = v.derived;
  const i = v.inputs;
  eq("profile id", v.profile, "sealwire-v2");
  // Section 10.1: the client hello carries the profile and the public key, nothing else (no
  // credential); the server hello carries the id and every handshake field.
  const flow = v.flow;
  if (!flow || typeof flow !== "object") throw new Error("hardened.json has no flow");
  const clientHello = flow.client_hello;
  eq("client hello event", clientHello.event, "hello");
  sameJson("client hello fields", Object.keys(clientHello.data).sort(), ["profile", "publicKey"]);
  eq("client hello profile", clientHello.data.profile, "sealwire-v2");
  eq("client hello publicKey", unb64(clientHello.data.publicKey), d.client_public);
  const serverHello = flow.server_hello;
  eq("server hello event", serverHello.event, "hello");
  const hello = serverHello.data;
  if (v.hello !== undefined) sameJson("hello = flow.server_hello.data", v.hello, hello);
  await checkHandshakeCommon(v, "hello", hello);
  eq("hello.id", hello.id, i.client_id);
  const salt = unhex(i.salt);
  const profile = enc.encode(v.profile);
  const identity = unhex(d.identity_public);
  const transcript = concat(
    enc.encode("sealwire-v2 transcript"),
    len16(profile),
    len16(enc.encode(hello.id)),
    unhex(d.client_public),
    unhex(d.server_public),
    salt,
    be(i.rekey_after, 4),
    len16(identity),
  );
  eq("transcript", transcript, d.transcript);
  const th = new Uint8Array(await subtle.digest("SHA-256", transcript));
  eq("transcript_hash", th, d.transcript_hash);
  const x = unhex(d.ecdh_x);
  eq("prk", await hmac(salt, x), d.prk);
  const c2s0 = await hkdf(salt, x, concat(enc.encode("sealwire-v2 c2s"), th));
  const s2c0 = await hkdf(salt, x, concat(enc.encode("sealwire-v2 s2c"), th));
  const confirm = await hkdf(salt, x, concat(enc.encode("sealwire-v2 confirm"), th));
  eq("c2s_secret0", c2s0, d.c2s_secret0);
  eq("s2c_secret0", s2c0, d.s2c_secret0);
  eq("confirm_key", confirm, d.confirm_key);
  const sf = await hmac(confirm, concat(enc.encode("sealwire-v2 server finished"), th));
  const cf = await hmac(confirm, concat(enc.encode("sealwire-v2 client finished"), th));
  eq("server_finished", sf, d.server_finished);
  eq("client_finished", cf, d.client_finished);
  eq("hello.confirm", unb64(hello.confirm), d.server_finished);
  eq("hello.profile", hello.profile, "sealwire-v2");
  eq("hello.rekeyAfter", String(hello.rekeyAfter), String(i.rekey_after));
  eq("hello.identityKey", unb64(hello.identityKey), d.identity_public);
  // Server identity: ECDSA P-256 / SHA-256 over label || th, r || s.
  const sigInput = concat(enc.encode("sealwire-v2 server signature"), th);
  eq("signature_input", sigInput, d.signature_input);
  eq("hello.signature", unb64(hello.signature), d.signature);
  const vk = await subtle.importKey("raw", identity, { name: "ECDSA", namedCurve: "P-256" }, false, [
    "verify",
  ]);
  const sig = unhex(d.signature);
  const ok = await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, vk, sig, sigInput);
  eq("signature verifies", String(ok), "true");
  const bad = sig.slice();
  bad[0] ^= 1;
  const notOk = await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, vk, bad, sigInput);
  eq("tampered signature rejected", String(notOk), "false");
  // Epoch chains, as far as the records need (checked against every published epoch).
  const chains = {};
  for (const [dirName, secret0] of [
    ["c2s", c2s0],
    ["s2c", s2c0],
  ]) {
    const lastSeq = Math.max(-1, ...v.records.filter((r) => r.direction === dirName).map((r) => r.seq));
    const epochs = Math.max(d.epochs[dirName].length, Math.floor(lastSeq / i.rekey_after) + 1);
    let s = secret0;
    chains[dirName] = [];
    for (let e = 0; e < epochs; e++) {
      const key = await expand(s, enc.encode("sealwire-v2 key"), 32);
      const prefix = await expand(s, enc.encode("sealwire-v2 iv"), 4);
      const published = d.epochs[dirName].find((p) => p.epoch === e);
      if (published) {
        eq(`${dirName} epoch ${e} secret`, s, published.secret);
        eq(`${dirName} epoch ${e} key`, key, published.key);
        eq(`${dirName} epoch ${e} nonce_prefix`, prefix, published.nonce_prefix);
      }
      chains[dirName].push({ key, prefix });
      s = await expand(s, enc.encode("sealwire-v2 next"), 32);
    }
  }
  // Records: nonce, AAD and ciphertext from the spec.
  const nextSeq = { c2s: 0, s2c: 0 };
  for (const r of v.records) {
    const seq = nextSeq[r.direction]++;
    eq(`${r.direction} seq`, String(r.seq), String(seq));
    const epoch = Math.floor(seq / i.rekey_after);
    eq(`${r.direction} epoch`, String(r.epoch), String(epoch));
    const { key, prefix } = chains[r.direction][epoch];
    const nonce = concat(prefix, be(seq, 8));
    eq(`${r.direction} ${seq} nonce`, nonce, r.nonce);
    const dirByte = r.direction === "c2s" ? 1 : 2;
    const aad = concat(enc.encode("sealwire-v2"), new Uint8Array([dirByte]), be(epoch, 4), be(seq, 8));
    eq(`${r.direction} ${seq} aad`, aad, r.aad);
    const ct = await gcm(key, nonce, aad, enc.encode(r.plaintext));
    eq(`${r.direction} ${seq} ct||tag`, ct, r.ciphertext + r.tag);
    checkFrame(r);
  }
  // Any record repeated under `flow` is one of `records`, byte for byte.
  for (const [name, value] of Object.entries(flow)) {
    for (const r of Array.isArray(value) ? value : [value]) {
      if (!r || typeof r !== "object" || r.direction === undefined) continue;
      const same = v.records.find((x) => x.direction === r.direction && x.seq === r.seq);
      if (!same) throw new Error(`flow.${name}: no record ${r.direction} ${r.seq}`);
      sameJson(`flow.${name}`, r, same);
    }
  }
  // The flow of section 10.1 in the records: c2s 0 the key confirmation, c2s 1 the sealed
  // authenticate (the token, no public key or profile), s2c 0 the sealed connected naming the
  // hello's id; later a sealed refresh and its refreshed (section 11).
  const rec = (dir, seq) => {
    const r = v.records.find((x) => x.direction === dir && x.seq === seq);
    if (!r) throw new Error(`no ${dir} record ${seq}`);
    return JSON.parse(r.plaintext);
  };
  const conf = rec("c2s", 0);
  eq("c2s 0 event", conf.event, "confirm");
  eq("c2s 0 mac", unb64(conf.data.mac), d.client_finished);
  const auth = rec("c2s", 1);
  eq("c2s 1 event", auth.event, "authenticate");
  eq("c2s 1 token", typeof auth.data.token, "string");
  eq("c2s 1 no publicKey/profile", String("publicKey" in auth.data || "profile" in auth.data), "false");
  const connected = rec("s2c", 0);
  eq("s2c 0 event", connected.event, "connected");
  eq("s2c 0 connected.id", connected.data.id, hello.id);
  eq("s2c 0 userId", typeof connected.data.userId, "string");
  for (const [name, value] of [
    ["client hello", clientHello],
    ["server hello", serverHello],
  ]) {
    eq(`${name} holds no token`, String(JSON.stringify(value).includes(auth.data.token)), "false");
    eq(`${name} holds no user id`, String(JSON.stringify(value).includes(connected.data.userId)), "false");
  }
  const plain = v.records.map((r) => ({ r, m: r.plaintext ? JSON.parse(r.plaintext) : null }));
  const refresh = plain.find(({ r, m }) => r.direction === "c2s" && m?.event === "refresh");
  if (!refresh) throw new Error("no c2s refresh record");
  eq("refresh token", typeof refresh.m.data.token, "string");
  const refreshed = plain.find(({ r, m }) => r.direction === "s2c" && m?.event === "refreshed");
  if (refreshed) eq("refreshed userId", refreshed.m.data.userId, connected.data.userId);
}

// Section 14: the epoch key and nonce prefix from the secret (HKDF-Expand with the secret as
// the PRK), the grant, and each record's nonce, AAD, ciphertext and whole frame, as text.
async function checkRoom(v) {
  eq("room extension", v.extension, "sealwire-room-v1");
  const secret = unhex(v.secret_hex);
  eq("room secret length", String(secret.length), "32");
  const key = await expand(secret, enc.encode("sealwire-room-v1 key"), 32);
  const prefix = await expand(secret, enc.encode("sealwire-room-v1 iv"), 4);
  eq("room key", key, v.key_hex);
  eq("room nonce prefix", prefix, v.prefix_hex);
  const grant = JSON.stringify({ event: "room-key", data: { room: v.room, epoch: v.epoch, key: b64(secret) } });
  eq("room grant", grant, v.grant);
  const room = enc.encode(v.room);
  let last = -1;
  for (const r of v.records) {
    const name = `room record ${r.seq}`;
    eq(`${name} seq increases`, String(Number.isSafeInteger(r.seq) && r.seq > last), "true");
    last = r.seq;
    const nonce = concat(prefix, be(r.seq, 8));
    eq(`${name} nonce`, nonce, r.nonce_hex);
    const aad = concat(enc.encode("sealwire-room-v1"), len16(room), be(v.epoch, 8), be(r.seq, 8));
    eq(`${name} aad`, aad, r.aad_hex);
    const ct = await gcm(key, nonce, aad, enc.encode(r.plaintext));
    eq(`${name} ct||tag`, b64(ct), r.ct_b64);
    const frame = JSON.stringify({
      event: "room-encrypted",
      data: { room: v.room, epoch: v.epoch, seq: r.seq, ct: b64(ct) },
    });
    eq(`${name} frame`, frame, r.frame);
    // Section 14.6: the binary form is the type byte, the AAD after its label, and ct||tag.
    const binary = concat(new Uint8Array([1]), len16(room), be(v.epoch, 8), be(r.seq, 8), ct);
    eq(`${name} binary`, binary, r.binary_hex);
  }
}

const compat = JSON.parse(readFileSync(join(dir, "compat.json"), "utf8"));
const hardened = JSON.parse(readFileSync(join(dir, "hardened.json"), "utf8"));
const room = JSON.parse(readFileSync(join(dir, "room.json"), "utf8"));
for (const v of [compat, hardened, room]) {
  if (typeof v.source !== "string" || v.source.length === 0) {
    console.error("vector file without provenance");
    process.exit(1);
  }
}
await checkCompat(compat);
await checkHardened(hardened);
await checkRoom(room);
console.log(`ok: ${checked} values checked (node ${process.version})`);
