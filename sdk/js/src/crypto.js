// The client half of the sealwire handshake and the two record formats, on WebCrypto only.
// Follows docs/PROTOCOL.md sections 5 (compatibility profile) and 10 (hardened `sealwire-v2`:
// the key exchange comes first, the credentials travel sealed).
//
// Keys never leave WebCrypto when they need not: the ECDH private key, every AES-GCM key and
// every HMAC key are non-extractable CryptoKeys. The per-direction chain secrets of the
// hardened profile come out of HMAC as bytes (they must, to be imported as the next HMAC
// key); they are wiped as soon as they are imported.

import {
  bigEndian,
  bytesEqual,
  concat,
  fromBase64,
  lengthPrefixed,
  takeUtf8,
  toBase64,
  toBase64Url,
  utf8,
} from "./encoding.js";

/** Profile id of the hardened profile, sent in the client `hello`. */
export const HARDENED_PROFILE = "sealwire-v2";
/** HKDF info of the compatibility profile (the IGNIS default). */
export const COMPAT_INFO = "ignis-ecdh-p256-aes-256-gcm-v1";
/** Largest `rekeyAfter` a client accepts. */
export const MAX_REKEY_AFTER = 2 ** 24;
/** Records per direction after which a session refuses to seal or open. */
export const MAX_SEQ = 2 ** 48;

const PUBLIC_KEY_LEN = 65;
const SALT_LEN = 32;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const DIR_C2S = 1;
const DIR_S2C = 2;

const label = {
  transcript: utf8("sealwire-v2 transcript"),
  c2s: utf8("sealwire-v2 c2s"),
  s2c: utf8("sealwire-v2 s2c"),
  confirm: utf8("sealwire-v2 confirm"),
  key: utf8("sealwire-v2 key"),
  iv: utf8("sealwire-v2 iv"),
  next: utf8("sealwire-v2 next"),
  serverFinished: utf8("sealwire-v2 server finished"),
  clientFinished: utf8("sealwire-v2 client finished"),
  serverSignature: utf8("sealwire-v2 server signature"),
  aad: utf8("sealwire-v2"),
};

/**
 * A crypto failure. `kind` is one of `invalid-public-key`, `encoding`, `handshake`,
 * `untrusted-server`, `decrypt`, `exhausted`.
 */
export class CryptoError extends Error {
  constructor(kind, message) {
    super(message ?? kind);
    this.name = "CryptoError";
    this.kind = kind;
  }
}

/** The WebCrypto `SubtleCrypto` of this runtime, or a clear error. */
export function defaultSubtle() {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    throw new CryptoError(
      "handshake",
      "WebCrypto is not available (a browser needs a secure context: https or localhost)",
    );
  }
  return subtle;
}

function randomBytes(n) {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

function decodeField(value, length, kind) {
  let bytes;
  try {
    bytes = fromBase64(value);
  } catch {
    throw new CryptoError(kind, "not base64");
  }
  if (length !== undefined && bytes.length !== length) {
    throw new CryptoError(kind, `expected ${length} bytes, got ${bytes.length}`);
  }
  return bytes;
}

/** Decodes and validates a peer's public key: 65 bytes, `0x04 || X || Y`, on P-256. */
async function importPeerKey(subtle, b64, algorithm) {
  const raw = decodeField(b64, PUBLIC_KEY_LEN, "invalid-public-key");
  if (raw[0] !== 0x04) throw new CryptoError("invalid-public-key", "not an uncompressed point");
  try {
    const key = await subtle.importKey("raw", raw, { name: algorithm, namedCurve: "P-256" }, false,
      algorithm === "ECDSA" ? ["verify"] : []);
    return { raw, key };
  } catch {
    throw new CryptoError("invalid-public-key", "not a point on P-256");
  }
}

const hmacKey = (subtle, bytes, usages = ["sign"]) =>
  subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, usages);

const hmac = async (subtle, key, data) => new Uint8Array(await subtle.sign("HMAC", key, data));

/** HKDF-SHA256 with a 32-byte output: Extract(salt, ikm) then Expand(info). */
async function hkdf32(subtle, salt, ikm, info) {
  const k = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, k, 256));
}

const aesKey = (subtle, bytes) =>
  subtle.importKey("raw", bytes, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);

/**
 * The client half of a handshake. Make one per connection attempt (a fresh key pair each
 * time).
 *
 * Hardened (`sealwire-v2`, the default): send `{"event":"hello","data": helloData()}` first,
 * pass the server's `hello` payload to `finishHello`, which checks everything before any
 * credential leaves the client; then send the returned `confirmation` (c2s record 0) and the
 * sealed `authenticate` (`session.sealFrame`, c2s record 1).
 *
 * Compatibility: send `publicKeyBase64` inside a plaintext `authenticate`, then pass the
 * `connected` payload to `finish`.
 */
export class ClientHandshake {
  /**
   * @param {object} [options]
   * @param {"compat"|"hardened"} [options.profile] default `hardened`
   * @param {string[]} [options.pinnedServerKeys] base64 identity keys (hardened only)
   * @param {string} [options.info] compatibility-profile HKDF info
   * @param {SubtleCrypto} [options.subtle]
   */
  static async create(options = {}) {
    const subtle = options.subtle ?? defaultSubtle();
    const pair = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, [
      "deriveBits",
    ]);
    const pub = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
    return new ClientHandshake(subtle, pair.privateKey, pub, options);
  }

  /**
   * A handshake with a fixed key pair (known-answer tests). `privateKey` is the 32-byte
   * scalar and `publicKey` its 65-byte uncompressed point.
   */
  static async fromKeyPair(privateKey, publicKey, options = {}) {
    const subtle = options.subtle ?? defaultSubtle();
    const jwk = {
      kty: "EC",
      crv: "P-256",
      d: toBase64Url(privateKey),
      x: toBase64Url(publicKey.slice(1, 33)),
      y: toBase64Url(publicKey.slice(33, 65)),
    };
    const key = await subtle.importKey("jwk", jwk, { name: "ECDH", namedCurve: "P-256" }, false, [
      "deriveBits",
    ]);
    return new ClientHandshake(subtle, key, Uint8Array.from(publicKey), options);
  }

  constructor(subtle, privateKey, publicKey, options) {
    this.subtle = subtle;
    this.privateKey = privateKey;
    this.publicKey = publicKey;
    this.profile = options.profile ?? "hardened";
    if (this.profile !== "hardened" && this.profile !== "compat") {
      throw new CryptoError("handshake", `unknown profile ${this.profile}`);
    }
    this.info = options.info ?? COMPAT_INFO;
    if (this.profile !== "hardened" && (options.pinnedServerKeys ?? []).length > 0) {
      // Only the hardened profile checks a server identity: pins elsewhere would protect nothing.
      throw new CryptoError("handshake", "pinned server keys need the hardened profile");
    }
    this.pins = (options.pinnedServerKeys ?? []).map((k) =>
      decodeField(k, PUBLIC_KEY_LEN, "invalid-public-key"),
    );
    this.used = false;
  }

  /** Base64 of our public key (`hello.publicKey`, or `authenticate.publicKey` in compat). */
  get publicKeyBase64() {
    return toBase64(this.publicKey);
  }

  /** The hardened profile id (`undefined` in the compatibility profile). */
  get profileId() {
    return this.profile === "hardened" ? HARDENED_PROFILE : undefined;
  }

  /** The payload of the client `hello` (hardened only): `{profile, publicKey}`, no credential. */
  helloData() {
    if (this.profile !== "hardened") {
      throw new CryptoError("handshake", "the compatibility profile has no hello");
    }
    return { profile: HARDENED_PROFILE, publicKey: this.publicKeyBase64 };
  }

  /** The client `hello` frame as JSON text. */
  helloFrame() {
    return JSON.stringify({ event: "hello", data: this.helloData() });
  }

  async sharedX(serverKey) {
    return new Uint8Array(
      await this.subtle.deriveBits({ name: "ECDH", public: serverKey }, this.privateKey, 256),
    );
  }

  /** A handshake derives one session: a second finish would reuse its key pair. */
  claim() {
    if (this.used) throw new CryptoError("handshake", "this handshake is already finished");
    this.used = true;
  }

  /**
   * Hardened: derives the session from the server's `hello` payload. Refuses a hello without
   * `profile: "sealwire-v2"` (downgrade), checks `rekeyAfter`, the identity pins and
   * signature, and the server's key confirmation, all before the caller sends any
   * credential. Returns the session, the confirmation record (c2s `seq` 0, to send first)
   * and the client id the server announced (the sealed `connected` must repeat it).
   *
   * @returns {Promise<{session: HardenedSession, confirmation: string, id: string}>}
   */
  async finishHello(hello) {
    if (this.profile !== "hardened") {
      throw new CryptoError("handshake", "the compatibility profile has no hello");
    }
    if (typeof hello !== "object" || hello === null) {
      throw new CryptoError("handshake", "hello carries no payload");
    }
    if (hello.profile !== HARDENED_PROFILE) {
      throw new CryptoError(
        "handshake",
        `asked for ${HARDENED_PROFILE}, the server's hello says ${hello.profile ?? "nothing"}`,
      );
    }
    const { server, salt } = await this.serverKeyAndSalt(hello, "hello");
    this.claim();
    const x = await this.sharedX(server.key);
    try {
      return await this.finishHardened(hello, server.raw, salt, x);
    } finally {
      x.fill(0);
    }
  }

  /**
   * Compatibility profile: derives the session from the plaintext `connected` payload
   * (`serverPublicKey`, `salt`). Refuses a `connected` that names a profile.
   *
   * @returns {Promise<{session: CompatSession, confirmation: null}>}
   */
  async finish(connected) {
    if (this.profile !== "compat") {
      throw new CryptoError(
        "handshake",
        "a hardened session comes from the server's hello (finishHello), never from connected",
      );
    }
    if (typeof connected !== "object" || connected === null) {
      throw new CryptoError("handshake", "connected carries no payload");
    }
    if (connected.profile !== undefined && connected.profile !== null) {
      throw new CryptoError("handshake", `asked for compat, got ${connected.profile}`);
    }
    const { server, salt } = await this.serverKeyAndSalt(connected, "connected");
    this.claim();
    const subtle = this.subtle;
    const x = await this.sharedX(server.key);
    try {
      const key = await hkdf32(subtle, salt, x, utf8(this.info));
      const session = new CompatSession(subtle, await aesKey(subtle, key));
      key.fill(0);
      return { session, confirmation: null };
    } finally {
      x.fill(0);
    }
  }

  async serverKeyAndSalt(payload, what) {
    const { serverPublicKey, salt } = payload;
    if (typeof serverPublicKey !== "string" || typeof salt !== "string") {
      throw new CryptoError("handshake", `${what} carries no serverPublicKey/salt`);
    }
    const server = await importPeerKey(this.subtle, serverPublicKey, "ECDH");
    return { server, salt: decodeField(salt, SALT_LEN, "encoding") };
  }

  async finishHardened(hello, serverPublic, salt, x) {
    const subtle = this.subtle;
    const rekeyAfter = hello.rekeyAfter;
    if (!Number.isInteger(rekeyAfter) || rekeyAfter < 1 || rekeyAfter > MAX_REKEY_AFTER) {
      throw new CryptoError("handshake", "rekeyAfter missing or out of range");
    }
    if (typeof hello.id !== "string" || hello.id.length === 0) {
      throw new CryptoError("handshake", "hello has no client id");
    }
    let identity = new Uint8Array(0);
    if (hello.identityKey !== undefined && hello.identityKey !== null) {
      if (typeof hello.identityKey !== "string") {
        throw new CryptoError("untrusted-server", "identityKey is not a string");
      }
      identity = decodeField(hello.identityKey, PUBLIC_KEY_LEN, "untrusted-server");
    }
    if (this.pins.length > 0 && !this.pins.some((p) => bytesEqual(p, identity))) {
      throw new CryptoError("untrusted-server", "the server's identity key is not pinned");
    }
    const transcript = concat(
      label.transcript,
      lengthPrefixed(utf8(HARDENED_PROFILE)),
      lengthPrefixed(utf8(hello.id)),
      this.publicKey,
      serverPublic,
      salt,
      bigEndian(rekeyAfter, 4),
      lengthPrefixed(identity),
    );
    const th = new Uint8Array(await subtle.digest("SHA-256", transcript));
    if (identity.length > 0) {
      let key;
      try {
        ({ key } = await importPeerKey(subtle, hello.identityKey, "ECDSA"));
      } catch {
        throw new CryptoError("untrusted-server", "identityKey is not a P-256 public key");
      }
      let signature;
      try {
        signature = fromBase64(hello.signature);
      } catch {
        throw new CryptoError("untrusted-server", "signature missing or not base64");
      }
      const ok = await subtle.verify(
        { name: "ECDSA", hash: "SHA-256" },
        key,
        signature,
        concat(label.serverSignature, th),
      );
      if (!ok) throw new CryptoError("untrusted-server", "the transcript signature does not verify");
    }
    const c2s = await hkdf32(subtle, salt, x, concat(label.c2s, th));
    const s2c = await hkdf32(subtle, salt, x, concat(label.s2c, th));
    const confirmBytes = await hkdf32(subtle, salt, x, concat(label.confirm, th));
    const confirmKey = await hmacKey(subtle, confirmBytes, ["sign", "verify"]);
    confirmBytes.fill(0);
    let serverFinished;
    try {
      serverFinished = fromBase64(hello.confirm);
    } catch {
      c2s.fill(0);
      s2c.fill(0);
      throw new CryptoError("handshake", "confirm missing or not base64");
    }
    // subtle.verify compares in constant time.
    const confirmed = await subtle.verify(
      "HMAC",
      confirmKey,
      serverFinished,
      concat(label.serverFinished, th),
    );
    if (!confirmed) {
      c2s.fill(0);
      s2c.fill(0);
      throw new CryptoError("handshake", "the server's key confirmation is wrong");
    }
    const mine = await hmac(subtle, confirmKey, concat(label.clientFinished, th));
    const session = new HardenedSession(subtle, rekeyAfter);
    await session.init(c2s, s2c);
    const confirmation = await session.sealFrame(
      JSON.stringify({ event: "confirm", data: { mac: toBase64(mine) } }),
    );
    return { session, confirmation, id: hello.id };
  }
}

/** IGNIS-compatible session: one AES-256-GCM key, random nonces, no AAD. */
export class CompatSession {
  constructor(subtle, key) {
    this.subtle = subtle;
    this.key = key;
    this.profile = "compat";
  }

  /** The `encrypted` frame (JSON text) carrying `plaintext` (a JSON envelope string). */
  async sealFrame(plaintext) {
    const iv = randomBytes(NONCE_LEN);
    const ct = new Uint8Array(
      await this.subtle.encrypt({ name: "AES-GCM", iv, tagLength: 128 }, this.key, utf8(plaintext)),
    );
    return JSON.stringify({ event: "encrypted", data: { iv: toBase64(iv), ct: toBase64(ct) } });
  }

  /** The plaintext string inside an `encrypted` frame's `data`; `CryptoError("decrypt")` if not. */
  async open(data) {
    const { iv, ct } = recordFields(data);
    // A `seq` belongs to the hardened profile: on a compatibility session it is refused.
    if (iv.length !== NONCE_LEN || data.seq !== undefined) throw new CryptoError("decrypt");
    try {
      const pt = await this.subtle.decrypt({ name: "AES-GCM", iv, tagLength: 128 }, this.key, ct);
      return takeUtf8(new Uint8Array(pt));
    } catch {
      throw new CryptoError("decrypt");
    }
  }
}

function recordFields(data) {
  if (typeof data !== "object" || data === null) throw new CryptoError("decrypt");
  try {
    const iv = fromBase64(data.iv);
    const ct = fromBase64(data.ct);
    if (ct.length < TAG_LEN) throw new CryptoError("decrypt");
    return { iv, ct };
  } catch {
    throw new CryptoError("decrypt");
  }
}

/** One direction of a hardened session: the epoch chain and the next sequence number. */
class Direction {
  constructor(dir) {
    this.dir = dir;
    this.seq = 0;
    this.epoch = 0;
    this.material = null; // {chain: CryptoKey (HMAC over d_e), key: CryptoKey, prefix: Uint8Array}
  }
}

/**
 * A 32-byte secret (bytes, wiped here) expanded as an HKDF PRK into an AES-256-GCM key
 * (non-extractable, for `usages`) and a 4-byte nonce prefix, under the labels `keyLabel` and
 * `ivLabel`: `HKDF-Expand(secret, label, L)`, one HMAC block each. Also returns the HMAC key
 * over the secret (`chain`), from which the hardened profile derives its next epoch.
 */
export async function expandSecret(subtle, secret, keyLabel, ivLabel, usages = ["encrypt", "decrypt"]) {
  const chain = await hmacKey(subtle, secret);
  secret.fill(0);
  const one = new Uint8Array([1]);
  const keyBytes = await hmac(subtle, chain, concat(keyLabel, one));
  const key = await subtle.importKey("raw", keyBytes, { name: "AES-GCM" }, false, usages);
  keyBytes.fill(0);
  const block = await hmac(subtle, chain, concat(ivLabel, one));
  const prefix = block.slice(0, 4);
  block.fill(0);
  return { chain, key, prefix };
}

/** Epoch material from the chain secret `d_e` (bytes, wiped here). */
const epochMaterial = (subtle, secret) => expandSecret(subtle, secret, label.key, label.iv);

async function nextEpoch(subtle, material) {
  const next = await hmac(subtle, material.chain, concat(label.next, new Uint8Array([1])));
  return epochMaterial(subtle, next);
}

/**
 * `sealwire-v2` session: a key chain per direction, counter nonces, AAD binding direction,
 * epoch and sequence; a record opens only if it is exactly the next one expected.
 */
export class HardenedSession {
  /** The last `sealFrame` and `open` queued: each direction runs one call at a time. */
  #sending = Promise.resolve();
  #opening = Promise.resolve();

  constructor(subtle, rekeyAfter) {
    this.subtle = subtle;
    this.rekeyAfter = rekeyAfter;
    this.profile = HARDENED_PROFILE;
    this.send = new Direction(DIR_C2S);
    this.recv = new Direction(DIR_S2C);
  }

  async init(c2s, s2c) {
    this.send.material = await epochMaterial(this.subtle, c2s);
    this.recv.material = await epochMaterial(this.subtle, s2c);
  }

  nonceAndAad(d, epoch, seq, prefix) {
    const nonce = concat(prefix, bigEndian(seq, 8));
    const aad = concat(label.aad, new Uint8Array([d.dir]), bigEndian(epoch, 4), bigEndian(seq, 8));
    return { nonce, aad };
  }

  /**
   * The next c2s record. Overlapping calls are queued: each takes the next sequence number in
   * the order the calls were made, and an epoch's key is derived once.
   */
  sealFrame(plaintext) {
    const run = this.#sending.then(() => this.#seal(plaintext));
    this.#sending = run.catch(() => {});
    return run;
  }

  async #seal(plaintext) {
    const d = this.send;
    const seq = d.seq;
    if (seq >= MAX_SEQ) throw new CryptoError("exhausted", "record limit reached");
    d.seq += 1;
    const epoch = Math.floor(seq / this.rekeyAfter);
    while (d.epoch < epoch) {
      d.material = await nextEpoch(this.subtle, d.material);
      d.epoch += 1;
    }
    const { nonce, aad } = this.nonceAndAad(d, epoch, seq, d.material.prefix);
    const ct = new Uint8Array(
      await this.subtle.encrypt(
        { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 },
        d.material.key,
        utf8(plaintext),
      ),
    );
    return JSON.stringify({
      event: "encrypted",
      data: { iv: toBase64(nonce), ct: toBase64(ct), seq },
    });
  }

  /**
   * Opens the next s2c record. Anything but exactly the expected `seq`, with exactly the
   * nonce computed for it, under the right epoch key, fails with `CryptoError("decrypt")` and
   * leaves the state unchanged. Overlapping calls are queued, so a record presented twice at
   * once opens once.
   */
  open(data) {
    const run = this.#opening.then(() => this.#open(data));
    this.#opening = run.catch(() => {});
    return run;
  }

  async #open(data) {
    const d = this.recv;
    const { iv, ct } = recordFields(data);
    const seq = data.seq;
    if (!Number.isSafeInteger(seq) || seq !== d.seq || seq >= MAX_SEQ) {
      throw new CryptoError("decrypt");
    }
    const epoch = Math.floor(seq / this.rekeyAfter);
    let material = d.material;
    for (let e = d.epoch; e < epoch; e++) {
      material = await nextEpoch(this.subtle, material);
    }
    const { nonce, aad } = this.nonceAndAad(d, epoch, seq, material.prefix);
    if (!bytesEqual(nonce, iv)) throw new CryptoError("decrypt");
    let pt;
    try {
      pt = await this.subtle.decrypt(
        { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 },
        material.key,
        ct,
      );
    } catch {
      throw new CryptoError("decrypt");
    }
    // Commit only after the record opened.
    d.material = material;
    d.epoch = epoch;
    d.seq = seq + 1;
    try {
      return takeUtf8(new Uint8Array(pt));
    } catch {
      throw new CryptoError("decrypt");
    }
  }
}
