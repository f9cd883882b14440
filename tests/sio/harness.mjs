// Drives real socket.io-client sockets for tests/socketio.rs.
//
// Commands arrive on stdin, one JSON object per line; everything observed leaves on stdout,
// one JSON object per line, each with the `name` of its socket:
//   {"cmd":"connect","name":"a","url":"http://127.0.0.1:1234","path":"/io",
//    "transports":["websocket"],"auth":{"token":"alice"},"query":{},"headers":{},"encrypt":false,
//    "reconnection":false}
//   {"cmd":"emit","name":"a","event":"join","args":[{"rooms":["x"]}]}
//   {"cmd":"emit_sealed","name":"a","event":"chat","data":{...}}   (encrypted sockets)
//   {"cmd":"close","name":"a"}
// Output types: connect {id}, connect_error {message}, event {event, args},
// decrypted {event, data} (an encrypted socket's `encrypted` events opened with WebCrypto),
// decrypt_error, raw {data} (every engine.io message of an encrypted socket, for leak checks),
// disconnect {reason, active}. A line {"type":"ready"} is printed once the harness reads commands.
//
// The sealwire SDK (sdk/js) over the Socket.IO transport, hardened, on the same io():
//   {"cmd":"sdk_connect","name":"s","url":"http://127.0.0.1:1234/io","transports":["websocket"],
//    "token":"alice","pins":["<b64>"],"recover":false}
//   {"cmd":"sdk_send","name":"s","event":"chat","data":{...}}
//   {"cmd":"sdk_join","name":"s","rooms":["x"]}   {"cmd":"sdk_leave",...}   {"cmd":"sdk_close",...}
//   {"cmd":"sdk_tamper","name":"s"}   (flips one ciphertext bit of the next sealed record it sends)
//   {"cmd":"sdk_gate","name":"s"}     (later connection attempts wait for sdk_go)
//   {"cmd":"sdk_drop","name":"s"}     (cuts the engine.io connection: the client reconnects)
//   {"cmd":"sdk_go","name":"s"}
// sdk_connect also takes "ttl": <ms> (the token provider hands out `ttl:<ms>:<token>`) and
// "reconnect": true (50 ms between attempts).
// Output types: sdk_connected {info}, message {event, data, encrypted, position},
// recovered {streams}, refreshed {expiresAt}, server_error {message},
// sdk_disconnected {reason: {kind, code, message}, retryIn}, raw {dir: "in"|"out", data}
// (every engine.io packet both ways, for leak checks).
import { io } from "socket.io-client";
import { createInterface } from "node:readline";
import { SealwireClient } from "../../sdk/js/src/index.js";

const subtle = globalThis.crypto.subtle;
const INFO = new TextEncoder().encode("ignis-ecdh-p256-aes-256-gcm-v1");
const sockets = new Map();

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
// `{"$bytes": [1, 2]}` anywhere in an emitted argument becomes a Buffer (a binary attachment).
const withBuffers = (v) => {
  if (Array.isArray(v)) return v.map(withBuffers);
  if (v && typeof v === "object") {
    if (Array.isArray(v.$bytes)) return Buffer.from(v.$bytes);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withBuffers(x)]));
  }
  return v;
};
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"));

async function keyPair() {
  const pair = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const raw = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  return { pair, publicKey: b64(raw) };
}

async function sessionKey(pair, serverPublicKey, salt) {
  const serverKey = await subtle.importKey("raw", unb64(serverPublicKey), { name: "ECDH", namedCurve: "P-256" }, false, []);
  const shared = await subtle.deriveBits({ name: "ECDH", public: serverKey }, pair.privateKey, 256);
  const hkdf = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: unb64(salt), info: INFO }, hkdf, 256);
  return subtle.importKey("raw", bits, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

async function connect(cmd) {
  const name = cmd.name;
  const auth = { ...(cmd.auth ?? {}) };
  let keys = null;
  if (cmd.encrypt) {
    keys = await keyPair();
    auth.publicKey = keys.publicKey;
  }
  const socket = io(cmd.url, {
    path: cmd.path ?? "/io",
    transports: cmd.transports ?? ["websocket"],
    auth,
    query: cmd.query ?? {},
    extraHeaders: cmd.headers ?? {},
    // "reconnection": true lets socket.io-client reconnect by itself (50-100 ms apart).
    reconnection: cmd.reconnection === true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
    forceNew: true,
    timeout: 5000,
  });
  const state = { socket, keys, key: null, chain: Promise.resolve() };
  sockets.set(name, state);
  socket.on("connect", () => {
    out({ name, type: "connect", id: socket.id, transport: socket.io.engine.transport.name });
    if (cmd.encrypt) {
      socket.io.engine.on("message", (data) => out({ name, type: "raw", data: String(data) }));
    }
  });
  // Everything of one socket leaves in the order it happened: behind pending decryptions.
  const later = (o) => {
    state.chain = state.chain.then(() => out(o));
  };
  socket.on("connect_error", (e) => later({ name, type: "connect_error", message: String(e?.message ?? e) }));
  // `active`: socket.io-client will reconnect by itself (it does not after a `41`).
  socket.on("disconnect", (reason) => later({ name, type: "disconnect", reason, active: socket.active }));
  socket.onAny((event, ...args) => {
    // Keep the order of events: decryption is asynchronous.
    state.chain = state.chain.then(async () => {
      out({ name, type: "event", event, args });
      if (!keys) return;
      if (event === "authenticated" && args[0]?.serverPublicKey) {
        state.key = await sessionKey(keys.pair, args[0].serverPublicKey, args[0].salt);
      } else if (event === "encrypted") {
        try {
          const { iv, ct } = args[0];
          const pt = await subtle.decrypt({ name: "AES-GCM", iv: unb64(iv), tagLength: 128 }, state.key, unb64(ct));
          const frame = JSON.parse(new TextDecoder().decode(pt));
          out({ name, type: "decrypted", event: frame.event, data: frame.data ?? null });
        } catch (e) {
          out({ name, type: "decrypt_error", message: String(e) });
        }
      }
    });
  });
}

/** socket.io-client's io(), with every engine.io packet of the socket printed (`raw`) and a
 * switch to tamper with the next sealed record sent. */
function tappedIo(name, state) {
  return (uri, opts) => {
    const socket = io(uri, state.gated ? { ...opts, autoConnect: false } : opts);
    const tap = () => {
      const engine = socket.io.engine;
      engine?.on("message", (data) => out({ name, type: "raw", dir: "in", data: String(data) }));
      engine?.on("packetCreate", (p) => {
        if (p.type === "message") out({ name, type: "raw", dir: "out", data: String(p.data) });
      });
    };
    if (state.gated) {
      state.held.push(() => {
        socket.connect();
        tap();
      });
    } else {
      tap();
    }
    state.sockets.push(socket);
    const emit = socket.emit.bind(socket);
    socket.emit = (event, ...args) => {
      const frame = args[0];
      if (state.tamper && event === "sealwire" && frame?.event === "encrypted") {
        state.tamper = false;
        const ct = Buffer.from(frame.data.ct, "base64");
        ct[0] ^= 0x01;
        args[0] = { ...frame, data: { ...frame.data, ct: ct.toString("base64") } };
      }
      return emit(event, ...args);
    };
    return socket;
  };
}

function sdkConnect(cmd) {
  const name = cmd.name;
  const state = { tamper: false, client: null, gated: false, held: [], sockets: [] };
  const client = new SealwireClient({
    url: cmd.url,
    transport: "socket.io",
    io: tappedIo(name, state),
    socketIo: { transports: cmd.transports ?? ["websocket"] },
    token: cmd.ttl ? () => `ttl:${cmd.ttl}:${cmd.token}` : cmd.token,
    pinnedServerKeys: cmd.pins ?? [],
    recover: cmd.recover ?? false,
    reconnect: cmd.reconnect ? { initialDelay: 50, maxDelay: 50, jitter: 0 } : { enabled: false },
    connectTimeout: 8000,
  });
  state.client = client;
  sdks.set(name, state);
  client.on("connected", (info) => out({ name, type: "sdk_connected", info }));
  client.on("message", (m) =>
    out({ name, type: "message", event: m.event, data: m.data, encrypted: m.encrypted, position: m.position ?? null }),
  );
  client.on("recovered", ({ streams }) => out({ name, type: "recovered", streams }));
  client.on("refreshed", ({ expiresAt }) => out({ name, type: "refreshed", expiresAt }));
  client.on("serverError", ({ message }) => out({ name, type: "server_error", message }));
  client.on("disconnected", ({ reason, retryIn }) =>
    out({ name, type: "sdk_disconnected", reason: { kind: reason.kind, code: reason.code, message: reason.message }, retryIn }),
  );
  client.connect().catch(() => {});
}

const sdks = new Map();

async function sdkCommand(cmd) {
  const s = sdks.get(cmd.name);
  if (!s) return out({ type: "harness_error", message: `no sdk client ${cmd.name}` });
  const report = (p) => p.catch((e) => out({ name: cmd.name, type: "sdk_error", message: String(e?.message ?? e) }));
  switch (cmd.cmd) {
    case "sdk_send":
      return report(s.client.send(cmd.event, cmd.data ?? null));
    case "sdk_join":
      return report(s.client.join(cmd.rooms));
    case "sdk_leave":
      return report(s.client.leave(cmd.rooms));
    case "sdk_tamper":
      s.tamper = true;
      return;
    case "sdk_gate":
      s.gated = true;
      return;
    case "sdk_go":
      s.gated = false;
      for (const go of s.held.splice(0)) go();
      return;
    case "sdk_drop":
      s.sockets.at(-1)?.io.engine?.close();
      return;
    case "sdk_close":
      s.client.close();
      return;
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    out({ type: "harness_error", message: `bad command: ${line}` });
    return;
  }
  const s = sockets.get(cmd.name);
  switch (cmd.cmd) {
    case "connect":
      await connect(cmd);
      break;
    case "emit":
      s?.socket.emit(cmd.event, ...(cmd.args ?? []).map(withBuffers));
      break;
    case "emit_sealed": {
      // Sends {"event","data"} sealed with the session key as `encrypted {iv, ct}`.
      await s.chain;
      const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
      const pt = new TextEncoder().encode(JSON.stringify({ event: cmd.event, data: cmd.data ?? null }));
      const ct = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv, tagLength: 128 }, s.key, pt));
      s.socket.emit("encrypted", { iv: b64(iv), ct: b64(ct) });
      break;
    }
    case "close":
      s?.socket.disconnect();
      break;
    case "sdk_connect":
      sdkConnect(cmd);
      break;
    case "sdk_send":
    case "sdk_join":
    case "sdk_leave":
    case "sdk_tamper":
    case "sdk_gate":
    case "sdk_go":
    case "sdk_drop":
    case "sdk_close":
      await sdkCommand(cmd);
      break;
    case "exit":
      for (const { socket } of sockets.values()) socket.disconnect();
      for (const { client } of sdks.values()) client.close();
      process.exit(0);
    default:
      out({ type: "harness_error", message: `unknown command ${cmd.cmd}` });
  }
});
rl.on("close", () => process.exit(0));
out({ type: "ready" });
