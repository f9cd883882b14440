// Drives real socket.io-client sockets for tests/socketio.rs.
//
// Commands arrive on stdin, one JSON object per line; everything observed leaves on stdout,
// one JSON object per line, each with the `name` of its socket:
//   {"cmd":"connect","name":"a","url":"http://127.0.0.1:1234","path":"/io",
//    "transports":["websocket"],"auth":{"token":"alice"},"query":{},"headers":{},"encrypt":false}
//   {"cmd":"emit","name":"a","event":"join","args":[{"rooms":["x"]}]}
//   {"cmd":"emit_sealed","name":"a","event":"chat","data":{...}}   (encrypted sockets)
//   {"cmd":"close","name":"a"}
// Output types: connect {id}, connect_error {message}, event {event, args},
// decrypted {event, data} (an encrypted socket's `encrypted` events opened with WebCrypto),
// decrypt_error, raw {data} (every engine.io message of an encrypted socket, for leak checks),
// disconnect {reason}. A line {"type":"ready"} is printed once the harness reads commands.
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const subtle = globalThis.crypto.subtle;
const INFO = new TextEncoder().encode("ignis-ecdh-p256-aes-256-gcm-v1");
const sockets = new Map();

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
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
    reconnection: false,
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
  socket.on("disconnect", (reason) => later({ name, type: "disconnect", reason }));
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
      s?.socket.emit(cmd.event, ...(cmd.args ?? []));
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
    case "exit":
      for (const { socket } of sockets.values()) socket.disconnect();
      process.exit(0);
    default:
      out({ type: "harness_error", message: `unknown command ${cmd.cmd}` });
  }
});
rl.on("close", () => process.exit(0));
out({ type: "ready" });
