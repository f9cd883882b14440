// The Socket.IO transport (src/socketio.js) against an in-memory socket.io-client stand-in
// whose server half is the scripted `sealwire-v2` server of test/support/fake-server.mjs:
// what the handshake `auth` holds, frames as `sealwire` events, close codes from
// `sealwire:close`, room-key grants and room records in the tunnel, and the configuration
// checks. The real socket.io-client against a real
// server: tests/socketio.rs.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SealwireClient, SealwireError, socketIoTarget } from "../src/index.js";
import { acceptHello, makeIdentity, roomEpoch, until } from "./support/fake-server.mjs";

const TOKEN = "sio-secret-token-5c1d";
const T0 = "2026-11-22T03:04:05.000Z";

/**
 * A stand-in for socket.io-client's `io`: every call opens a socket whose server side runs
 * `script(sock)`; `sock.recv()` is the next `sealwire` frame the client emitted (JSON text),
 * `sock.push(frame)` emits `sealwire` to the client, `sock.close(code, reason)` sends
 * `sealwire:close` and disconnects, `sock.drop()` disconnects without it.
 */
function fakeIo(script) {
  const net = { calls: [], emitted: [], errors: [] };
  net.io = (uri, opts) => {
    net.calls.push({ uri, opts });
    const handlers = new Map();
    const fire = (event, ...args) => {
      for (const h of [...(handlers.get(event) ?? [])]) h(...args);
    };
    const inbox = [];
    let waiting = null;
    let connected = false;
    const socket = {
      io: { engine: { close() {} } },
      on(event, handler) {
        if (!handlers.has(event)) handlers.set(event, []);
        handlers.get(event).push(handler);
        return socket;
      },
      off() {
        handlers.clear();
        return socket;
      },
      emit(event, ...args) {
        net.emitted.push({ event, args });
        if (event !== "sealwire") return socket;
        const text = JSON.stringify(args[0]);
        if (waiting) {
          const w = waiting;
          waiting = null;
          w(text);
        } else {
          inbox.push(text);
        }
        return socket;
      },
      disconnect() {
        if (!connected) return socket;
        connected = false;
        fire("disconnect", "io client disconnect");
        return socket;
      },
    };
    const server = {
      recv: () =>
        inbox.length > 0
          ? Promise.resolve(inbox.shift())
          : new Promise((resolve) => {
              waiting = resolve;
            }),
      push: (frame) => fire("sealwire", typeof frame === "string" ? JSON.parse(frame) : frame),
      close: (code, reason) => {
        fire("sealwire:close", { code, reason });
        connected = false;
        fire("disconnect", "io server disconnect");
      },
      drop: () => {
        connected = false;
        fire("disconnect", "transport close");
      },
    };
    setTimeout(() => {
      connected = true;
      fire("connect");
      Promise.resolve()
        .then(() => script(server))
        .catch((err) => net.errors.push(err));
    }, 0);
    return socket;
  };
  return net;
}

function client(t, net, options = {}) {
  const c = new SealwireClient({
    url: "http://fake:1/io",
    transport: "socket.io",
    io: net.io,
    token: TOKEN,
    reconnect: { enabled: false },
    ...options,
  });
  const events = [];
  for (const type of ["connected", "message", "serverError", "disconnected"]) {
    c.on(type, (payload) => events.push({ type, ...payload }));
  }
  t.after(() => c.close());
  return { c, events };
}

test("socket.io: the auth holds the profile only, every frame is a sealwire event, the token travels sealed", async (t) => {
  const identity = await makeIdentity();
  const net = fakeIo(async (sock) => {
    const { hs, auth } = await acceptHello(sock, { id: "c-sio", identity });
    assert.deepEqual(auth, { token: TOKEN, roomKeys: "sealwire-room-v1" });
    sock.push(await hs.seal({ event: "connected", data: { id: "c-sio", userId: "alice", time: T0 } }));
    const m = await hs.open(JSON.parse(await sock.recv()).data);
    sock.push(await hs.seal({ event: "echo", data: m }));
  });
  const { c, events } = client(t, net, {
    pinnedServerKeys: [identity.publicKeyBase64],
    socketIo: { transports: ["polling"], ioOptions: { timeout: 1234, auth: { token: "never" } } },
  });
  const info = await c.connect();
  assert.deepEqual(info, { id: "c-sio", userId: "alice", profile: "sealwire-v2", encrypted: true, expiresAt: null });
  assert.equal(net.calls.length, 1);
  const { uri, opts } = net.calls[0];
  assert.equal(uri, "http://fake:1");
  assert.equal(opts.path, "/io");
  assert.deepEqual(opts.auth, { profile: "sealwire-v2" }, "no token in the handshake, whatever ioOptions say");
  assert.deepEqual(opts.transports, ["polling"]);
  assert.equal(opts.timeout, 1234);
  assert.equal(opts.reconnection, false);
  assert.equal(opts.forceNew, true);
  await c.send("note", { n: 1 });
  await until(() => events.some((e) => e.type === "message"), "echo");
  const echo = events.find((e) => e.type === "message");
  assert.deepEqual(echo.data, { event: "note", data: { n: 1 } });
  assert.equal(echo.encrypted, true);
  const frames = net.emitted.map(({ event, args }) => {
    assert.equal(event, "sealwire");
    assert.equal(args.length, 1);
    return args[0];
  });
  assert.deepEqual(
    frames.map((f) => f.event),
    ["hello", "encrypted", "encrypted", "encrypted"],
  );
  assert.deepEqual(frames.slice(1).map((f) => f.data.seq), [0, 1, 2]);
  for (const f of frames) assert.ok(!JSON.stringify(f).includes(TOKEN));
  assert.deepEqual(net.errors, []);
});

test("socket.io: room-key grants and room records travel as sealwire events like any /ws frame", async (t) => {
  const net = fakeIo(async (sock) => {
    const { hs, auth } = await acceptHello(sock, { id: "c-sio" });
    sock.push(await hs.seal({ event: "connected", data: { id: "c-sio", userId: "alice", time: T0, roomKeys: auth.roomKeys } }));
    const e = await roomEpoch("chat:keyed1", 3);
    sock.push(await hs.seal(e.grant));
    sock.push(await e.frame({ event: "chat", data: { text: "hi" } }));
    const bad = JSON.parse(await e.frame({ event: "chat", data: { text: "again" } }));
    bad.data.seq = 0; // a replay
    sock.push(bad);
  });
  const { c, events } = client(t, net, { captureRawFrames: true });
  await c.connect();
  await until(() => events.some((e) => e.type === "disconnected"), "the replay ends the connection");
  const messages = events.filter((e) => e.type === "message");
  assert.deepEqual(messages.map((m) => [m.event, m.data, JSON.parse(m.raw).event]), [["chat", { text: "hi" }, "room-encrypted"]]);
  assert.equal(events.find((e) => e.type === "disconnected").reason.kind, "crypto");
  assert.deepEqual(net.errors, []);
});

test("socket.io: sealwire:close gives the close code; a disconnect without it is a network failure", async (t) => {
  const refused = fakeIo(async (sock) => {
    const { hs } = await acceptHello(sock, { id: "c-r" });
    sock.push(await hs.seal({ event: "error", data: { message: "Authentication failed" } }));
    sock.close(4003, "Authentication failed");
  });
  const { c } = client(t, refused);
  await assert.rejects(c.connect(), (err) => {
    assert.equal(err.kind, "disconnected");
    assert.equal(err.reason.kind, "auth-failed");
    assert.equal(err.reason.code, 4003);
    assert.equal(err.reason.message, "Authentication failed");
    assert.equal(err.reason.retryable, false);
    return true;
  });

  const dropped = fakeIo(async (sock) => {
    await sock.recv();
    sock.drop();
  });
  const { c: d, events } = client(t, dropped, { reconnect: { enabled: true, initialDelay: 60_000, maxDelay: 60_000 } });
  d.connect().catch(() => {});
  await until(() => events.some((e) => e.type === "disconnected"), "disconnected");
  const gone = events.find((e) => e.type === "disconnected");
  assert.equal(gone.reason.kind, "network");
  assert.equal(gone.reason.retryable, true);
  assert.ok(gone.retryIn > 0);
});

test("socket.io: configuration is checked", () => {
  const io = () => {
    throw new Error("not called");
  };
  const make = (options) => () => new SealwireClient({ url: "https://h/io", transport: "socket.io", io, ...options });
  for (const encryption of ["compat", "off"]) {
    assert.throws(make({ encryption }), (e) => e instanceof SealwireError && e.kind === "config");
  }
  assert.throws(make({ transport: "sse" }), (e) => e.kind === "config");
  assert.throws(make({ io: "io" }), (e) => e.kind === "config");
  assert.throws(make({ url: "ftp://h/io" }), (e) => e.kind === "config");
  assert.doesNotThrow(make({ url: "wss://h/io" }));
  // The WebSocket transport still wants a ws(s) URL.
  assert.throws(() => new SealwireClient({ url: "https://h/ws", WebSocket: class {} }), (e) => e.kind === "config");
  assert.deepEqual(socketIoTarget("https://rt.example.com/io/"), { uri: "https://rt.example.com", path: "/io" });
  assert.deepEqual(socketIoTarget("ws://127.0.0.1:8080"), { uri: "http://127.0.0.1:8080", path: "/io" });
  assert.deepEqual(socketIoTarget("wss://h:1/rt/io", "/x"), { uri: "https://h:1", path: "/x" });
});

test("socket.io helper: pins and token given in `client` hold, and a failed call goes to onError", async () => {
  const { SocketIOClientHelper } = await import("../src/index.js");
  const io = () => {
    throw new Error("not called");
  };
  const pin = (await makeIdentity()).publicKeyBase64;
  assert.equal(typeof pin, "string");
  const errors = [];
  const helper = new SocketIOClientHelper({
    host: "http://h",
    io,
    options: { autoConnect: false },
    client: { token: TOKEN, pinnedServerKeys: [pin] },
    onError: (e) => errors.push(e),
  });
  assert.deepEqual(helper.client.options.pinnedServerKeys, [pin]);
  assert.equal(helper.client.options.token, TOKEN);
  // The helper's own fields win over `client`.
  const own = new SocketIOClientHelper({ host: "http://h", io, options: { autoConnect: false }, token: "own", pinnedServerKeys: ["k"], client: { token: TOKEN, pinnedServerKeys: [pin] } });
  assert.deepEqual(own.client.options.pinnedServerKeys, ["k"]);
  assert.equal(own.client.options.token, "own");
  // Not awaited, as IGNIS callers do: the rejection is reported, not left unhandled.
  helper.joinRooms({ rooms: [] });
  await until(() => errors.length === 1, "onError");
  assert.ok(errors[0] instanceof SealwireError);
});

test("socket.io: a token in socket.io-client's own options is refused (it would travel unsealed)", () => {
  const io = () => {
    throw new Error("not called");
  };
  const make = (ioOptions) => () =>
    new SealwireClient({ url: "https://h/io", transport: "socket.io", io, token: TOKEN, socketIo: { ioOptions } });
  for (const ioOptions of [
    { extraHeaders: { Authorization: `Bearer ${TOKEN}` } },
    { extraHeaders: { authorization: "x" } },
    { query: { token: TOKEN } },
    { query: `a=1&token=${TOKEN}` },
    // As the server reads it: percent-decoded, a leading "?" allowed.
    { query: `%74oken=${TOKEN}` },
    { query: `?token=${TOKEN}` },
    { transportOptions: { polling: { extraHeaders: { Authorization: "x" } } } },
  ]) {
    assert.throws(make(ioOptions), (e) => e instanceof SealwireError && e.kind === "config", JSON.stringify(ioOptions));
  }
  assert.doesNotThrow(make({ extraHeaders: { "X-Trace": "1" }, query: { room: "a" } }));
  assert.doesNotThrow(make({ query: "tokens=1&my_token=2" }));
  // In the URL itself.
  assert.throws(
    () => new SealwireClient({ url: `https://h/io?%74oken=${TOKEN}`, transport: "socket.io", io, token: TOKEN }),
    (e) => e instanceof SealwireError && e.kind === "config" && /url/.test(e.message),
  );
});
