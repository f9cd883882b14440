// Test support: an in-memory WebSocket and a scripted server half of `sealwire-v2`
// (docs/PROTOCOL.md section 10) and of room keys (`sealwire-room-v1`, section 14), written
// from the spec on WebCrypto. It shares no code with
// the SDK, so a client test against it is also a cross-check of the SDK's record layer.
import { webcrypto } from "node:crypto";

const subtle = globalThis.crypto?.subtle ?? webcrypto.subtle;
const enc = new TextEncoder();
const dec = new TextDecoder();

export const PROFILE = "sealwire-v2";
const b64 = (u8) => Buffer.from(u8).toString("base64");
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
const concat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
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
const random = (n) => webcrypto.getRandomValues(new Uint8Array(n));

async function hmac(key, data) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}
const expand = async (prk, info, len) => (await hmac(prk, concat(info, [1]))).slice(0, len);
const label = (s) => enc.encode(`${PROFILE} ${s}`);

/** A long-term ECDSA P-256 identity: `{publicKeyBase64, sign(bytes)}`. */
export async function makeIdentity() {
  const pair = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  return {
    raw,
    publicKeyBase64: b64(raw),
    sign: async (data) =>
      new Uint8Array(await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, data)),
  };
}

/** One direction of the record layer (1 = c2s, 2 = s2c). */
class Direction {
  constructor(dir, secret, rekeyAfter) {
    this.dir = dir;
    this.secret = secret;
    this.epoch = 0;
    this.seq = 0;
    this.rekeyAfter = rekeyAfter;
  }

  async material(seq) {
    const epoch = Math.floor(seq / this.rekeyAfter);
    while (this.epoch < epoch) {
      this.secret = await expand(this.secret, label("next"), 32);
      this.epoch += 1;
    }
    const raw = await expand(this.secret, label("key"), 32);
    const key = await subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
    const prefix = await expand(this.secret, label("iv"), 4);
    const nonce = concat(prefix, be(seq, 8));
    const aad = concat(enc.encode(PROFILE), [this.dir], be(epoch, 4), be(seq, 8));
    return { key, nonce, aad };
  }
}

/**
 * The server half for one client `hello` payload. Options: `id` (client id), `rekeyAfter`,
 * `identity` (from `makeIdentity`). Returns `{hello, seal, open, clientFinished}`: `hello` is
 * the server hello payload, `seal(envelope)` the next s2c frame (JSON text), `open(data)` the
 * next c2s record's plaintext envelope (parsed).
 */
export async function serverHandshake(clientHello, { id = "client-1", rekeyAfter = 1 << 20, identity = null } = {}) {
  if (clientHello?.profile !== PROFILE) throw new Error(`client hello profile ${clientHello?.profile}`);
  const clientPub = unb64(clientHello.publicKey);
  const pair = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const serverPub = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  const peer = await subtle.importKey("raw", clientPub, { name: "ECDH", namedCurve: "P-256" }, false, []);
  const x = new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: peer }, pair.privateKey, 256));
  const salt = random(32);
  const identityRaw = identity ? identity.raw : new Uint8Array(0);
  const transcript = concat(
    label("transcript"),
    len16(enc.encode(PROFILE)),
    len16(enc.encode(id)),
    clientPub,
    serverPub,
    salt,
    be(rekeyAfter, 4),
    len16(identityRaw),
  );
  const th = new Uint8Array(await subtle.digest("SHA-256", transcript));
  const prk = await hmac(salt, x);
  const c2s = await expand(prk, concat(label("c2s"), th), 32);
  const s2c = await expand(prk, concat(label("s2c"), th), 32);
  const confirm = await expand(prk, concat(label("confirm"), th), 32);
  const hello = {
    id,
    profile: PROFILE,
    serverPublicKey: b64(serverPub),
    salt: b64(salt),
    rekeyAfter,
    confirm: b64(await hmac(confirm, concat(label("server finished"), th))),
  };
  if (identity) {
    hello.identityKey = identity.publicKeyBase64;
    hello.signature = b64(await identity.sign(concat(label("server signature"), th)));
  }
  const send = new Direction(2, s2c, rekeyAfter);
  const recv = new Direction(1, c2s, rekeyAfter);
  return {
    hello,
    clientFinished: b64(await hmac(confirm, concat(label("client finished"), th))),
    async seal(envelope) {
      const seq = send.seq++;
      const { key, nonce, aad } = await send.material(seq);
      const text = typeof envelope === "string" ? envelope : JSON.stringify(envelope);
      const ct = new Uint8Array(
        await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, key, enc.encode(text)),
      );
      return JSON.stringify({ event: "encrypted", data: { iv: b64(nonce), ct: b64(ct), seq } });
    },
    async open(data) {
      if (data?.seq !== recv.seq) throw new Error(`c2s seq ${data?.seq}, expected ${recv.seq}`);
      const { key, nonce, aad } = await recv.material(recv.seq);
      if (b64(nonce) !== data.iv) throw new Error("c2s nonce mismatch");
      const pt = await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, key, unb64(data.ct));
      recv.seq += 1;
      return JSON.parse(dec.decode(pt));
    },
  };
}

/**
 * The compatibility profile (docs/PROTOCOL.md section 5) up to its plaintext `connected`:
 * reads the client's `authenticate`, answers with the server key and salt, and returns
 * `{auth, seal(envelope)}` (`seal`: an `encrypted` frame, JSON text, under the one key).
 */
export async function acceptCompat(sock, { id = "client-1", info = "ignis-ecdh-p256-aes-256-gcm-v1" } = {}) {
  const auth = JSON.parse(await sock.recv());
  if (auth.event !== "authenticate") throw new Error(`first frame ${auth.event}`);
  const pair = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const peer = await subtle.importKey("raw", unb64(auth.data.publicKey), { name: "ECDH", namedCurve: "P-256" }, false, []);
  const x = await subtle.deriveBits({ name: "ECDH", public: peer }, pair.privateKey, 256);
  const salt = random(32);
  const ikm = await subtle.importKey("raw", x, "HKDF", false, ["deriveKey"]);
  const key = await subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: enc.encode(info) },
    ikm,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt"],
  );
  const serverPublicKey = b64(new Uint8Array(await subtle.exportKey("raw", pair.publicKey)));
  sock.push({ event: "connected", data: { id, userId: "u", time: new Date(0).toISOString(), serverPublicKey, salt: b64(salt) } });
  return {
    auth: auth.data,
    async seal(envelope) {
      const iv = random(12);
      const ct = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv }, key, enc.encode(JSON.stringify(envelope))));
      return JSON.stringify({ event: "encrypted", data: { iv: b64(iv), ct: b64(ct) } });
    },
  };
}

/**
 * The server side of one room epoch (`sealwire-room-v1`): `grant` is the `room-key` envelope
 * to seal into a member's own records, `frame(envelope, seq)` a `room-encrypted` frame (JSON
 * text) at `seq` (default: the next one), `data(envelope, seq)` its parsed `data`,
 * `binary(envelope, seq)` the record as a binary message (section 14.6, a Uint8Array).
 */
export async function roomEpoch(room, epoch, secret = random(32)) {
  const roomExpand = (what, len) => expand(secret, enc.encode(`sealwire-room-v1 ${what}`), len);
  const key = await subtle.importKey("raw", await roomExpand("key", 32), "AES-GCM", false, ["encrypt"]);
  const prefix = await roomExpand("iv", 4);
  let next = 0;
  const seal = async (envelope, seq = next) => {
    next = seq + 1;
    const name = enc.encode(room);
    const fields = concat(len16(name), be(epoch, 8), be(seq, 8));
    const aad = concat(enc.encode("sealwire-room-v1"), fields);
    const text = typeof envelope === "string" ? envelope : JSON.stringify(envelope);
    const ct = new Uint8Array(
      await subtle.encrypt({ name: "AES-GCM", iv: concat(prefix, be(seq, 8)), additionalData: aad }, key, enc.encode(text)),
    );
    return { seq, fields, ct };
  };
  const data = async (envelope, seq) => {
    const r = await seal(envelope, seq);
    return { room, epoch, seq: r.seq, ct: b64(r.ct) };
  };
  return {
    grant: { event: "room-key", data: { room, epoch, key: b64(secret) } },
    data,
    binary: async (envelope, seq) => {
      const r = await seal(envelope, seq);
      return concat(Uint8Array.of(1), r.fields, r.ct);
    },
    frame: async (envelope, seq) => JSON.stringify({ event: "room-encrypted", data: await data(envelope, seq) }),
  };
}

/**
 * An in-memory network. `new net.WebSocket(url)` opens a socket whose server side runs
 * `script(sock)`; `sock.recv()` is the next client frame (text), `sock.push(text|object)`
 * sends one to the client (a Uint8Array as a binary message: an ArrayBuffer when the client
 * set `binaryType` to "arraybuffer", else a Blob, as a browser does), `sock.close(code, reason)` closes from the server. Every frame a
 * client ever sent is in `net.sent` (in order, all sockets).
 */
export function fakeNetwork(script) {
  const net = { sockets: [], sent: [], errors: [] };
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sentFrames = [];
      this.inbox = [];
      this.waiting = null;
      net.sockets.push(this);
      const server = {
        recv: () =>
          this.inbox.length > 0
            ? Promise.resolve(this.inbox.shift())
            : new Promise((resolve) => {
                this.waiting = resolve;
              }),
        push: (frame) => {
          if (this.readyState !== 1) return;
          let data;
          if (frame instanceof Uint8Array) {
            const bytes = frame.slice();
            data = this.binaryType === "arraybuffer" ? bytes.buffer : new Blob([bytes]);
          } else {
            data = typeof frame === "string" ? frame : JSON.stringify(frame);
          }
          this.onmessage?.({ data });
        },
        close: (code = 1000, reason = "") => this.finish(code, reason),
        socket: this,
      };
      this.server = server;
      queueMicrotask(() => {
        this.readyState = 1;
        this.onopen?.({});
        Promise.resolve()
          .then(() => script(server))
          .catch((err) => net.errors.push(err));
      });
    }

    send(data) {
      if (this.readyState !== 1) throw new Error(`send in state ${this.readyState}`);
      this.sentFrames.push(data);
      net.sent.push(data);
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(data);
      } else {
        this.inbox.push(data);
      }
    }

    close(code = 1000, reason = "") {
      this.finish(code, reason);
    }

    finish(code, reason) {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      queueMicrotask(() => this.onclose?.({ code, reason }));
    }
  }
  net.WebSocket = FakeWebSocket;
  return net;
}

/** Resolves once `cond()` is true, polling on the event loop (not on timers, which tests may
 * mock) for up to `ms` of real time (`performance.now()`, which timer mocks leave alone): a
 * budget in time, not in rounds, so WebCrypto work on a loaded machine has room to finish. */
export async function until(cond, what = "condition", ms = 10_000) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (cond()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (cond()) return;
  throw new Error(`timed out waiting for ${what}`);
}

/** The standard sealwire-v2 server conversation up to the sealed `connected`. Returns the
 * handshake state and the client's sealed authenticate payload. */
export async function acceptHello(sock, options = {}) {
  const first = JSON.parse(await sock.recv());
  if (first.event !== "hello") throw new Error(`first frame ${first.event}`);
  const hs = await serverHandshake(first.data, options);
  sock.push({ event: "hello", data: hs.hello });
  const confirm = await hs.open(JSON.parse(await sock.recv()).data);
  if (confirm.event !== "confirm" || confirm.data?.mac !== hs.clientFinished) {
    throw new Error(`bad confirmation ${JSON.stringify(confirm)}`);
  }
  const auth = await hs.open(JSON.parse(await sock.recv()).data);
  if (auth.event !== "authenticate") throw new Error(`record 1 is ${auth.event}`);
  return { hs, auth: auth.data, clientHello: first.data };
}
