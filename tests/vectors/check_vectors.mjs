// Independent check of the published vectors with WebCrypto (globalThis.crypto.subtle).
//
//   node tests/vectors/check_vectors.mjs [dir]
//
// Recomputes every derived value of compat.json and hardened.json from their inputs,
// following docs/PROTOCOL.md, and compares byte for byte. Shares no code with the Rust
// implementation. Exits 1 on the first mismatch; prints the number of checked values.
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

async function checkHandshakeCommon(v) {
  const d = v.derived;
  const cPriv = unhex(v.inputs.client_private);
  const sPriv = unhex(v.inputs.server_private);
  const cPub = unhex(d.client_public);
  const sPub = unhex(d.server_public);
  eq("connected.serverPublicKey", unb64(v.connected.serverPublicKey), d.server_public);
  eq("connected.salt", unb64(v.connected.salt), v.inputs.salt);
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
  await checkHandshakeCommon(v);
  const d = v.derived;
  const key = await hkdf(unhex(v.inputs.salt), unhex(d.ecdh_x), enc.encode(v.inputs.info));
  eq("compat key", key, d.key);
  for (const r of v.records) {
    const ct = await gcm(key, unhex(r.nonce), new Uint8Array(), enc.encode(r.plaintext));
    eq(`compat ${r.direction} ct||tag`, ct, r.ciphertext + r.tag);
    checkFrame(r);
  }
}

async function checkHardened(v) {
  await checkHandshakeCommon(v);
  const d = v.derived;
  const i = v.inputs;
  const salt = unhex(i.salt);
  const profile = enc.encode(v.profile);
  eq("profile id", v.profile, "sealwire-v1");
  const identity = unhex(d.identity_public);
  const transcript = concat(
    enc.encode("sealwire-v1 transcript"),
    len16(profile),
    len16(enc.encode(i.client_id)),
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
  const c2s0 = await hkdf(salt, x, concat(enc.encode("sealwire-v1 c2s"), th));
  const s2c0 = await hkdf(salt, x, concat(enc.encode("sealwire-v1 s2c"), th));
  const confirm = await hkdf(salt, x, concat(enc.encode("sealwire-v1 confirm"), th));
  eq("c2s_secret0", c2s0, d.c2s_secret0);
  eq("s2c_secret0", s2c0, d.s2c_secret0);
  eq("confirm_key", confirm, d.confirm_key);
  const sf = await hmac(confirm, concat(enc.encode("sealwire-v1 server finished"), th));
  const cf = await hmac(confirm, concat(enc.encode("sealwire-v1 client finished"), th));
  eq("server_finished", sf, d.server_finished);
  eq("client_finished", cf, d.client_finished);
  eq("connected.confirm", unb64(v.connected.confirm), d.server_finished);
  eq("connected.profile", v.connected.profile, "sealwire-v1");
  eq("connected.rekeyAfter", String(v.connected.rekeyAfter), String(i.rekey_after));
  eq("connected.identityKey", unb64(v.connected.identityKey), d.identity_public);
  // Server identity: ECDSA P-256 / SHA-256 over label || th, r || s.
  const sigInput = concat(enc.encode("sealwire-v1 server signature"), th);
  eq("signature_input", sigInput, d.signature_input);
  eq("connected.signature", unb64(v.connected.signature), d.signature);
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
  // Epoch chains.
  const chains = {};
  for (const [dirName, secret0] of [
    ["c2s", c2s0],
    ["s2c", s2c0],
  ]) {
    let s = secret0;
    chains[dirName] = [];
    for (const e of d.epochs[dirName]) {
      eq(`${dirName} epoch ${e.epoch} secret`, s, e.secret);
      const key = await expand(s, enc.encode("sealwire-v1 key"), 32);
      const prefix = await expand(s, enc.encode("sealwire-v1 iv"), 4);
      eq(`${dirName} epoch ${e.epoch} key`, key, e.key);
      eq(`${dirName} epoch ${e.epoch} nonce_prefix`, prefix, e.nonce_prefix);
      chains[dirName].push({ key, prefix });
      s = await expand(s, enc.encode("sealwire-v1 next"), 32);
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
    const aad = concat(enc.encode("sealwire-v1"), new Uint8Array([dirByte]), be(epoch, 4), be(seq, 8));
    eq(`${r.direction} ${seq} aad`, aad, r.aad);
    const ct = await gcm(key, nonce, aad, enc.encode(r.plaintext));
    eq(`${r.direction} ${seq} ct||tag`, ct, r.ciphertext + r.tag);
    checkFrame(r);
  }
  // The first client record is the key confirmation.
  const first = v.records.find((r) => r.direction === "c2s");
  const conf = JSON.parse(first.plaintext);
  eq("confirmation event", conf.event, "confirm");
  eq("confirmation mac", unb64(conf.data.mac), d.client_finished);
}

const compat = JSON.parse(readFileSync(join(dir, "compat.json"), "utf8"));
const hardened = JSON.parse(readFileSync(join(dir, "hardened.json"), "utf8"));
for (const v of [compat, hardened]) {
  if (typeof v.source !== "string" || v.source.length === 0) {
    console.error("vector file without provenance");
    process.exit(1);
  }
}
await checkCompat(compat);
await checkHardened(hardened);
console.log(`ok: ${checked} values checked (node ${process.version})`);
