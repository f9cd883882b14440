// The SDK against a real sealwire server over real WebSockets. Run by `cargo test --test
// js_sdk`, which starts the servers and passes their addresses:
//   SEALWIRE_URL, SEALWIRE_ADMIN        echo server: identity key, rooms `chat:*` (room keys for
//                                       `chat:keyed*`), admin API
//   SEALWIRE_ADMIN_TOKEN, SEALWIRE_IDENTITY_KEY
//   SEALWIRE_STRICT_URL                 require-encryption server
//   SEALWIRE_IDLE_URL, SEALWIRE_IDLE_ADMIN   heartbeat timeout of 1.5 s
//   SEALWIRE_TWIN_URL, SEALWIRE_TWIN_ADMIN   a second instance of the echo server, sharing its
//                                            Redis (bus and history) and identity key
// The test authenticator maps a token to the user id of the same name (`reject*` is refused)
// and `ttl:<ms>:<user>` to `<user>` with a session that expires <ms> after authentication.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ClientHandshake, SealwireClient, parseBinaryRoomRecord } from "../../src/index.js";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests with \`cargo test --test js_sdk\``);
  return value;
}

const URL = env("SEALWIRE_URL");
const ADMIN = env("SEALWIRE_ADMIN");
const TOKEN = env("SEALWIRE_ADMIN_TOKEN");
const PIN = env("SEALWIRE_IDENTITY_KEY");
const STRICT_URL = env("SEALWIRE_STRICT_URL");
const IDLE_URL = env("SEALWIRE_IDLE_URL");
const IDLE_ADMIN = env("SEALWIRE_IDLE_ADMIN");
const TWIN_URL = env("SEALWIRE_TWIN_URL");
const TWIN_ADMIN = env("SEALWIRE_TWIN_ADMIN");
const WAIT_MS = 10_000;

async function admin(base, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Collects a client's events and waits for the ones a test expects. */
function recorder(client) {
  const seen = [];
  const waiters = [];
  const record = (type) => (payload) => {
    seen.push({ type, ...payload });
    for (const w of [...waiters]) {
      if (w.match({ type, ...payload })) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve({ type, ...payload });
      }
    }
  };
  for (const type of ["connected", "message", "recovered", "serverError", "decryptFailed", "plaintextRejected", "refreshed", "refreshFailed", "disconnected"]) {
    client.on(type, record(type));
  }
  return {
    seen,
    next(match, what = "event") {
      const found = seen.find(match);
      if (found) {
        seen.splice(seen.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
        waiters.push({
          match,
          resolve: (e) => {
            clearTimeout(timer);
            seen.splice(seen.indexOf(e), 1);
            resolve(e);
          },
        });
      });
    },
  };
}

const isMessage = (event) => (e) => e.type === "message" && e.event === event;

/** Round trip through the echo handler: everything sent before it has been processed. */
async function sync(client, rec, tag) {
  await client.send("sync", { tag });
  return rec.next((e) => isMessage("echo")(e) && e.data.event === "sync" && e.data.data.tag === tag, `echo ${tag}`);
}

/** A client that is closed when the test ends, passed or failed (open sockets and retry
 * timers would keep the test process alive). */
function open(t, options) {
  const client = new SealwireClient({ url: URL, reconnect: { initialDelay: 50, maxDelay: 200 }, ...options });
  t.after(() => client.close());
  return { client, rec: recorder(client) };
}

const LIMIT = { timeout: 30_000 };

test("hardened client with a pinned identity: user, room and broadcast messages arrive decrypted", LIMIT, async (t) => {
  const { client, rec } = open(t, { token: "alice-js", pinnedServerKeys: [PIN], captureRawFrames: true });
  const info = await client.connect();
  assert.equal(info.userId, "alice-js");
  assert.equal(info.profile, "sealwire-v2");
  assert.equal(info.encrypted, true);
  assert.equal(info.expiresAt, null);
  await client.join(["chat:lobby", "forbidden"]);
  await sync(client, rec, "joined");
  const rooms = await admin(ADMIN, "GET", `/socket/client/${info.id}/rooms`);
  assert.ok(rooms.body.rooms.includes("chat:lobby"), JSON.stringify(rooms.body));
  assert.ok(!rooms.body.rooms.includes("forbidden"));

  assert.equal((await admin(ADMIN, "POST", "/socket/user/alice-js/send", { topic: "to-user", data: { n: 1 } })).status, 200);
  assert.equal((await admin(ADMIN, "POST", "/socket/room/chat:lobby/send", { topic: "to-room", data: { n: 2 } })).status, 200);
  assert.equal((await admin(ADMIN, "POST", "/socket/broadcast", { topic: "to-all", data: { n: 3 } })).status, 200);
  for (const [event, n] of [["to-user", 1], ["to-room", 2], ["to-all", 3]]) {
    const m = await rec.next(isMessage(event), event);
    assert.deepEqual(m.data, { n });
    assert.equal(m.encrypted, true);
    // On the wire it was an `encrypted` record with a sequence number, not the plaintext.
    const wire = JSON.parse(m.raw);
    assert.equal(wire.event, "encrypted");
    assert.ok(Number.isInteger(wire.data.seq));
    assert.ok(!m.raw.includes(event));
  }
  assert.deepEqual(rec.seen.filter((e) => e.type === "decryptFailed" || e.type === "plaintextRejected"), []);
  client.close();
  const gone = await rec.next((e) => e.type === "disconnected", "disconnected");
  assert.equal(gone.reason.kind, "client-closed");
  assert.equal(gone.retryIn, null);
});

test("what the client sends reaches the server encrypted, in order, queued before connect", LIMIT, async (t) => {
  const { client, rec } = open(t, { token: "bob-js" });
  // Sent before the connection exists: queued, then sealed in order once it is up.
  const sends = [1, 2, 3].map((i) => client.send("note", { i }));
  await client.connect();
  await Promise.all(sends);
  for (const i of [1, 2, 3]) {
    const echo = await rec.next(isMessage("echo"), `echo ${i}`);
    assert.deepEqual(echo.data, { event: "note", data: { i }, wasEncrypted: true });
  }
  await assert.rejects(client.send("encrypted", {}), { kind: "invalid-event" });
  await assert.rejects(client.send("", {}), { kind: "invalid-event" });
  await assert.rejects(client.join([""]), { kind: "config" });
  await assert.rejects(client.join([]), { kind: "config" });
  await assert.rejects(client.leave(42), { kind: "config" });
  await assert.rejects(client.send("x".repeat(257), {}), { kind: "invalid-event" });
  client.close();
});

test("a send too large for the server is refused before it is sent; the connection goes on", LIMIT, async (t) => {
  for (const encryption of ["hardened", "off"]) {
    // The option says 10 MB; the server announces its own limit (128 KiB), which wins.
    const { client, rec } = open(t, {
      token: `hugo-${encryption}`,
      encryption,
      pinnedServerKeys: encryption === "off" ? [] : [PIN],
      maxMessageBytes: 10_000_000,
    });
    await client.connect();
    await assert.rejects(client.send("big", "x".repeat(200_000)), (e) => e.kind === "too-large");
    await client.send("fits", "x".repeat(64_000));
    const echo = await rec.next((e) => isMessage("echo")(e) && e.data.event === "fits", "the echo of the one that fits");
    assert.equal(echo.data.data.length, 64_000);
    assert.ok(!rec.seen.some((e) => e.type === "disconnected"), JSON.stringify(rec.seen.filter((e) => e.type === "disconnected")));
    client.close();
  }
});

test("compatibility profile interoperates with the server both ways", LIMIT, async (t) => {
  const { client, rec } = open(t, { token: "carol-js", encryption: "compat", captureRawFrames: true });
  const info = await client.connect();
  assert.equal(info.profile, "compat");
  await client.send("note", { hello: "compat" });
  const echo = await rec.next(isMessage("echo"), "echo");
  assert.deepEqual(echo.data, { event: "note", data: { hello: "compat" }, wasEncrypted: true });
  assert.equal(JSON.parse(echo.raw).event, "encrypted");
  client.close();
});

test("a plaintext client works where encryption is optional", LIMIT, async (t) => {
  const { client, rec } = open(t, { token: "dave-js", encryption: "off" });
  const info = await client.connect();
  assert.deepEqual([info.encrypted, info.profile], [false, "off"]);
  await client.send("note", { plain: true });
  const echo = await rec.next(isMessage("echo"), "echo");
  assert.deepEqual(echo.data, { event: "note", data: { plain: true }, wasEncrypted: false });
  assert.equal(echo.encrypted, false);
  client.close();
});

test("an unpinned server identity is refused before the token is sent, on every attempt", LIMIT, async (t) => {
  const other = await ClientHandshake.create();
  // A hello is not authenticated until it checks out, so a refused one is retried (an
  // attacker on the path must not be able to stop the client for good).
  const { client, rec } = open(t, {
    token: "erin-js",
    pinnedServerKeys: [other.publicKeyBase64],
    reconnect: { initialDelay: 50, maxDelay: 50, maxAttempts: 2 },
  });
  await assert.rejects(client.connect(), (err) => {
    assert.equal(err.kind, "disconnected");
    assert.equal(err.reason.kind, "handshake");
    assert.match(err.reason.message, /untrusted-server/);
    return true;
  });
  const gone = rec.seen.filter((e) => e.type === "disconnected");
  assert.deepEqual(gone.map((e) => [e.reason.kind, e.reason.retryable, e.retryIn === null]), [
    ["handshake", true, false],
    ["handshake", true, false],
    ["handshake", true, true],
  ]);
  assert.equal(rec.seen.filter((e) => e.type === "connected").length, 0);
});

test("4003: refused credentials are final", LIMIT, async (t) => {
  const { client, rec } = open(t, { token: "reject-me" });
  await assert.rejects(client.connect(), (err) => {
    assert.equal(err.reason.kind, "auth-failed");
    assert.equal(err.reason.code, 4003);
    assert.equal(err.reason.message, "Authentication failed");
    assert.equal(err.reason.retryable, false);
    return true;
  });
  assert.equal((await rec.next((e) => e.type === "disconnected")).retryIn, null);
});

test("4004: a plaintext client is refused by a require-encryption server, and not retried", LIMIT, async (t) => {
  const { client, rec } = open(t, { url: STRICT_URL, token: "frank-js", encryption: "off" });
  await assert.rejects(client.connect(), (err) => {
    assert.equal(err.reason.kind, "encryption-required");
    assert.equal(err.reason.code, 4004);
    assert.equal(err.reason.message, "Encryption handshake failed");
    return true;
  });
  assert.equal((await rec.next((e) => e.type === "disconnected")).retryIn, null);
  // The same server accepts an encrypting client.
  const ok = open(t, { url: STRICT_URL, token: "frank-js" });
  assert.equal((await ok.client.connect()).encrypted, true);
  ok.client.close();
});

test("4002: after a server-side disconnect the client re-handshakes and re-joins its rooms", LIMIT, async (t) => {
  // Heartbeats far apart: the idle server (1.5 s timeout) drops the client.
  const { client, rec } = open(t, { url: IDLE_URL, token: "gina-js", heartbeatInterval: 60_000 });
  const first = await client.connect();
  await client.join(["chat:again"]);
  const dropped = await rec.next((e) => e.type === "disconnected", "the 4002 close");
  assert.equal(dropped.reason.kind, "heartbeat-timeout");
  assert.equal(dropped.reason.code, 4002);
  assert.ok(dropped.retryIn !== null && dropped.retryIn <= 200);
  // Between connections: connect() waits for the next connection (not the dead one's info),
  // and a join is not sent twice (it is in the re-join every connection starts with).
  const waiting = client.connect();
  await client.join(["chat:between"]);
  const again = await rec.next((e) => e.type === "connected" && e.reconnected, "the reconnect");
  assert.equal((await waiting).id, again.id);
  assert.notEqual(again.id, first.id);
  assert.equal(again.encrypted, true);
  // The new connection joined the room again (a new handshake, so new keys too).
  let rooms = [];
  for (let i = 0; i < 50 && !rooms.includes("chat:again"); i++) {
    const res = await admin(IDLE_ADMIN, "GET", `/socket/client/${again.id}/rooms`);
    rooms = res.body.rooms ?? [];
    if (!rooms.includes("chat:again")) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(rooms.includes("chat:again") && rooms.includes("chat:between"), JSON.stringify(rooms));
  assert.deepEqual(client.joinedRooms(), ["chat:again", "chat:between"]);
  client.close();
});

/** A WebSocket that records every frame in both directions as it crosses the wire: what a
 * passive relay (a TLS-terminating proxy, say) would see. */
function tapped(wire) {
  return class TappedWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      // A binary message (a binary room record) is kept as bytes, with `data` its latin1
      // rendering, so that a search of `data` covers every byte.
      this.addEventListener("message", (e) => {
        if (typeof e.data === "string") {
          wire.push({ dir: "in", data: e.data });
        } else {
          const bytes = new Uint8Array(e.data);
          wire.push({ dir: "in", data: Buffer.from(bytes).toString("latin1"), bytes });
        }
      });
    }

    send(data) {
      wire.push({ dir: "out", data: String(data) });
      super.send(data);
    }
  };
}

test("a passive observer of the wire never sees the token, the user id or the rooms", LIMIT, async (t) => {
  // The test authenticator makes the token the user id, so it must not show up either way.
  const secret = `tap-secret-${Math.random().toString(36).slice(2)}`;
  const room = `chat:${secret}`;
  const wire = [];
  const { client, rec } = open(t, { token: secret, pinnedServerKeys: [PIN], WebSocket: tapped(wire) });
  const info = await client.connect();
  assert.equal(info.userId, secret);
  await client.join([room]);
  await sync(client, rec, "tapped");
  assert.equal((await admin(ADMIN, "POST", `/socket/user/${secret}/send`, { topic: "to-user", data: { secret } })).status, 200);
  assert.deepEqual((await rec.next(isMessage("to-user"), "to-user")).data, { secret });
  // The handshake: a plaintext hello each way, then records only.
  const [hello, serverHello] = [wire.find((f) => f.dir === "out"), wire.find((f) => f.dir === "in")];
  assert.deepEqual(Object.keys(JSON.parse(hello.data).data).sort(), ["profile", "publicKey"]);
  assert.equal(JSON.parse(serverHello.data).event, "hello");
  assert.equal(JSON.parse(serverHello.data).data.id, info.id);
  const rest = wire.filter((f) => f !== hello && f !== serverHello);
  assert.ok(rest.length >= 6, `${rest.length} frames`);
  for (const f of rest) assert.equal(JSON.parse(f.data).event, "encrypted", f.data);
  for (const f of wire) assert.ok(!f.data.includes(secret), `${f.dir}: ${f.data}`);
  client.close();

  // The same tap on a compatibility-profile client sees its token: the tap works.
  const compatWire = [];
  const compat = open(t, { token: `${secret}-compat`, encryption: "compat", WebSocket: tapped(compatWire) });
  await compat.client.connect();
  assert.ok(compatWire.some((f) => f.dir === "out" && f.data.includes(`${secret}-compat`)));
  compat.client.close();
});

test("room keys: a keyed room's publication is sealed once, the same bytes for every member; a new epoch after a leave", LIMIT, async (t) => {
  const room = "chat:keyed1";
  const wire = [];
  // A takes room records as binary messages (the default), B as text frames.
  const a = open(t, { token: "kim-js", pinnedServerKeys: [PIN], captureRawFrames: true, WebSocket: tapped(wire) });
  const b = open(t, { token: "lee-js", pinnedServerKeys: [PIN], captureRawFrames: true, binaryRoomRecords: false });
  // Without the extension: the same room, in its own records.
  const c = open(t, { token: "max-js", pinnedServerKeys: [PIN], captureRawFrames: true, roomKeys: false });
  for (const [name, m] of [["a", a], ["b", b], ["c", c]]) {
    await m.client.connect();
    await m.client.join([room]);
    await sync(m.client, m.rec, `keyed-${name}`);
  }
  const secret = `keyed-${Math.random().toString(36).slice(2)}`;
  assert.equal((await admin(ADMIN, "POST", `/socket/room/${room}/send`, { topic: "to-keyed", data: { secret } })).status, 200);
  const [ma, mb, mc] = await Promise.all([a, b, c].map((m) => m.rec.next(isMessage("to-keyed"), "to-keyed")));
  for (const m of [ma, mb, mc]) {
    assert.deepEqual(m.data, { secret });
    assert.equal(m.encrypted, true);
  }
  // Sealed once: both members holding the epoch key got the very same room record, B as a
  // text frame, A as a binary message (which has no text frame to capture).
  const frame = JSON.parse(mb.raw);
  assert.equal(frame.event, "room-encrypted");
  assert.equal(frame.data.room, room);
  assert.equal(ma.raw, undefined);
  assert.equal(JSON.parse(mc.raw).event, "encrypted");
  const binary = wire.filter((f) => f.bytes);
  assert.equal(binary.length, 1, "one binary record on A's wire");
  const record = parseBinaryRoomRecord(binary[0].bytes);
  assert.deepEqual(
    { ...record, ct: Buffer.from(record.ct).toString("base64") },
    { room, epoch: frame.data.epoch, seq: frame.data.seq, ct: frame.data.ct },
  );
  // The tap saw the record, and the grant only as one of the client's own sealed records.
  for (const f of wire) {
    assert.ok(!f.data.includes(secret), `${f.dir}: ${f.data}`);
    if (!f.bytes) assert.ok(["hello", "encrypted"].includes(JSON.parse(f.data).event), f.data);
  }
  // A member leaves: the next publication comes under a new epoch, which it is not handed.
  await b.client.leave([room]);
  await sync(b.client, b.rec, "keyed-left");
  assert.equal((await admin(ADMIN, "POST", `/socket/room/${room}/send`, { topic: "to-keyed", data: { n: 2 } })).status, 200);
  const again = await a.rec.next(isMessage("to-keyed"), "to-keyed after the leave");
  assert.deepEqual(again.data, { n: 2 });
  const next = parseBinaryRoomRecord(wire.filter((f) => f.bytes).at(-1).bytes);
  assert.ok(next.epoch > frame.data.epoch, JSON.stringify(next));
  for (const m of [a, b, c]) {
    assert.deepEqual(m.rec.seen.filter((e) => e.type === "decryptFailed" || e.type === "disconnected"), []);
    m.client.close();
  }
});

test("token provider: refreshes keep a short-lived session alive past its first expiry", LIMIT, async (t) => {
  const purposes = [];
  const token = async ({ purpose }) => {
    purposes.push(purpose);
    return "ttl:2500:rita-js";
  };
  const { client, rec } = open(t, { token, pinnedServerKeys: [PIN] });
  const startedAt = Date.now();
  const info = await client.connect();
  assert.equal(info.userId, "rita-js");
  assert.ok(info.expiresAt, "connected carries expiresAt");
  const firstExpiry = Date.parse(info.expiresAt);
  const first = await rec.next((e) => e.type === "refreshed", "first refresh");
  assert.equal(first.userId, "rita-js");
  assert.ok(Date.parse(first.expiresAt) > firstExpiry, `${first.expiresAt} after ${info.expiresAt}`);
  const second = await rec.next((e) => e.type === "refreshed", "second refresh");
  assert.ok(Date.parse(second.expiresAt) > Date.parse(first.expiresAt));
  // Past the first expiry (2.5 s after authentication; the second refresh comes at about
  // 4 s): the same connection still works.
  while (Date.now() - startedAt < 3_000) await new Promise((r) => setTimeout(r, 100));
  await sync(client, rec, "still-alive");
  assert.equal(client.connection.id, info.id);
  assert.ok(Date.parse(client.connection.expiresAt) >= Date.parse(second.expiresAt));
  assert.deepEqual(rec.seen.filter((e) => ["disconnected", "refreshFailed", "serverError"].includes(e.type)), []);
  assert.equal(purposes[0], "connect");
  assert.ok(purposes.slice(1).every((p) => p === "refresh") && purposes.length >= 3, JSON.stringify(purposes));
  client.close();
});

test("a refresh for another user is refused, and the session then expires with 4006", LIMIT, async (t) => {
  const tokens = ["ttl:1500:sam-js"];
  const token = () => tokens.shift() ?? "ttl:60000:not-sam-js";
  const { client, rec } = open(t, { token, pinnedServerKeys: [PIN] });
  const info = await client.connect();
  assert.equal(info.userId, "sam-js");
  const failed = await rec.next((e) => e.type === "refreshFailed", "refreshFailed");
  assert.equal(failed.message, "Refresh failed");
  assert.equal(failed.expiresAt, info.expiresAt);
  assert.ok(!rec.seen.some((e) => e.type === "serverError"), "a refused refresh is refreshFailed only");
  const expired = await rec.next((e) => e.type === "disconnected", "the 4006 close");
  assert.equal(expired.reason.kind, "session-expired");
  assert.equal(expired.reason.code, 4006);
  assert.equal(expired.reason.retryable, true);
  assert.notEqual(expired.retryIn, null);
  // Not before the original expiry (a little slack for clock granularity).
  assert.ok(Date.now() >= Date.parse(info.expiresAt) - 50, `closed at ${new Date().toISOString()}, expiry ${info.expiresAt}`);
  assert.equal(rec.seen.filter((e) => e.type === "refreshed").length, 0);
  // The reconnect asks the provider again and authenticates with what it returns.
  const again = await rec.next((e) => e.type === "connected" && e.reconnected, "the reconnect");
  assert.equal(again.userId, "not-sam-js");
  client.close();
});

test("compatibility and plaintext sessions refresh too; refresh() resolves with the new expiry", LIMIT, async (t) => {
  for (const encryption of ["compat", "off"]) {
    const user = `una-${encryption}-js`;
    const { client, rec } = open(t, { token: () => `ttl:1500:${user}`, encryption, autoRefresh: false, captureRawFrames: true });
    const info = await client.connect();
    assert.equal(info.userId, user);
    assert.ok(info.expiresAt);
    const result = await client.refresh();
    assert.equal(result.userId, user);
    assert.ok(Date.parse(result.expiresAt) >= Date.parse(info.expiresAt), `${result.expiresAt} vs ${info.expiresAt}`);
    assert.equal(client.connection.expiresAt, result.expiresAt);
    assert.equal((await rec.next((e) => e.type === "refreshed", "refreshed")).expiresAt, result.expiresAt);
    // Without automatic refreshes the session ends at its expiry: 4006.
    const expired = await rec.next((e) => e.type === "disconnected", `${encryption} 4006`);
    assert.deepEqual([expired.reason.kind, expired.reason.code], ["session-expired", 4006]);
    client.close();
  }
});

/** A bare WebSocket speaking the protocol by hand (no SDK client), to check the server. */
function raw(url) {
  const ws = new WebSocket(url);
  const inbox = [];
  let closed = null;
  let wake = () => {};
  ws.onmessage = (e) => {
    inbox.push(JSON.parse(String(e.data)));
    wake();
  };
  ws.onclose = (e) => {
    closed = { code: e.code };
    wake();
  };
  const until = async (cond, what) => {
    const deadline = Date.now() + WAIT_MS;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  };
  const opened = new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  return {
    async send(value) {
      await opened;
      ws.send(typeof value === "string" ? value : JSON.stringify(value));
    },
    async frame() {
      await until(() => inbox.length > 0 || closed, "a frame");
      if (inbox.length === 0) throw new Error(`closed with ${closed.code} instead of a frame`);
      return inbox.shift();
    },
    async closeCode() {
      await until(() => closed, "the close");
      return closed.code;
    },
    end: () => ws.close(),
  };
}

/** A raw hardened connection up to the verified server hello: `{conn, hello, session, confirmation}`. */
async function rawHello(t) {
  const conn = raw(URL);
  t.after(() => conn.end());
  const hs = await ClientHandshake.create({ pinnedServerKeys: [PIN] });
  await conn.send(hs.helloFrame());
  const serverHello = await conn.frame();
  assert.equal(serverHello.event, "hello");
  const { session, confirmation } = await hs.finishHello(serverHello.data);
  return { conn, hello: serverHello.data, session, confirmation };
}

test("raw protocol: sealwire-v1, a foreign hello profile and a profile in a plaintext authenticate get 4004", LIMIT, async (t) => {
  const publicKey = (await ClientHandshake.create()).publicKeyBase64;
  const attempts = [
    { event: "authenticate", data: { token: "raw-v1", publicKey, profile: "sealwire-v1" } },
    { event: "authenticate", data: { token: "raw-v2", publicKey, profile: "sealwire-v2" } },
    { event: "hello", data: { profile: "sealwire-v1", publicKey } },
    { event: "hello", data: { publicKey } },
    { event: "hello", data: { profile: "sealwire-v2", publicKey: 42 } },
  ];
  for (const first of attempts) {
    const conn = raw(URL);
    t.after(() => conn.end());
    await conn.send(first);
    assert.deepEqual(await conn.frame(), { event: "error", data: { message: "Encryption handshake failed" } }, JSON.stringify(first));
    assert.equal(await conn.closeCode(), 4004, JSON.stringify(first));
  }
});

test("raw protocol: the server hello has the handshake fields only; a plaintext authenticate after it is refused sealed", LIMIT, async (t) => {
  const { conn, hello, session } = await rawHello(t);
  assert.deepEqual(Object.keys(hello).sort(), ["confirm", "id", "identityKey", "profile", "rekeyAfter", "salt", "serverPublicKey", "signature"]);
  assert.equal(hello.profile, "sealwire-v2");
  assert.equal(hello.identityKey, PIN);
  // A relay swapping in a plaintext authenticate (or a client about to leak its token).
  await conn.send({ event: "authenticate", data: { token: "raw-swapped" } });
  const refused = await conn.frame();
  assert.equal(refused.event, "encrypted");
  assert.deepEqual(JSON.parse(await session.open(refused.data)), { event: "error", data: { message: "Encryption handshake failed" } });
  assert.equal(await conn.closeCode(), 4004);
});

test("raw protocol: sealed connected with expiresAt; a plaintext refresh is refused and not used (4006 at the first expiry)", LIMIT, async (t) => {
  const { conn, hello, session, confirmation } = await rawHello(t);
  await conn.send(confirmation);
  await conn.send(await session.sealFrame(JSON.stringify({ event: "authenticate", data: { token: "ttl:1500:raw-refresh" } })));
  const frame = await conn.frame();
  assert.equal(frame.event, "encrypted");
  assert.equal(frame.data.seq, 0);
  const connected = JSON.parse(await session.open(frame.data));
  assert.equal(connected.event, "connected");
  assert.deepEqual(Object.keys(connected.data).sort(), ["expiresAt", "id", "maxMessageBytes", "time", "userId"]);
  assert.equal(connected.data.id, hello.id);
  assert.equal(connected.data.userId, "raw-refresh");
  const lifetime = Date.parse(connected.data.expiresAt) - Date.parse(connected.data.time);
  assert.ok(lifetime > 1000 && lifetime <= 1500, `${lifetime} ms`);
  await conn.send({ event: "refresh", data: { token: "ttl:60000:raw-refresh" } });
  const refused = await conn.frame();
  assert.deepEqual(JSON.parse(await session.open(refused.data)), { event: "error", data: { message: "Encrypted message required" } });
  assert.equal(await conn.closeCode(), 4006);
  assert.ok(Date.now() >= Date.parse(connected.data.expiresAt) - 50);
});

/** Cuts the client's socket and keeps the network down until the server has let the client
 * (`id`) go, so that what is published next is missed. */
async function cut(gate, rec, id) {
  gate.down = true;
  gate.sockets.at(-1).close(3000, "cut");
  await rec.next((e) => e.type === "disconnected", "the cut");
  for (let i = 0; i < 100; i++) {
    const clients = (await admin(ADMIN, "GET", "/socket/clients")).body.clients ?? [];
    if (!clients.some((c) => c.id === id)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A WebSocket the test can cut, keep from reconnecting while `gate.down`, and send to
 * another instance (`gate.url`). */
function gated(gate) {
  return class GatedWebSocket extends WebSocket {
    constructor(url) {
      if (gate.down) throw new Error("network down (test gate)");
      super(gate.url ?? url);
      gate.sockets.push(this);
    }
  };
}

test("recover: a reconnect replays what was missed, once, in order, sealed, then recovered, then live", LIMIT, async (t) => {
  const gate = { down: false, sockets: [] };
  const { client, rec } = open(t, { token: "hana-js", recover: true, WebSocket: gated(gate) });
  const first = await client.connect();
  await client.join(["chat:hist"]);
  const joined = await rec.next((e) => e.type === "recovered" && e.streams.some((s) => s.stream === "room:chat:hist"), "join answer");
  const epoch = joined.streams.find((s) => s.stream === "room:chat:hist").epoch;
  const send = (n) => admin(ADMIN, "POST", "/socket/room/chat:hist/send", { topic: "hist", data: { n } });
  for (let n = 1; n <= 3; n++) assert.equal((await send(n)).body.offset, n);
  for (let n = 1; n <= 3; n++) {
    const m = await rec.next(isMessage("hist"), `live ${n}`);
    assert.deepEqual(m.position, { stream: "room:chat:hist", offset: n, epoch });
  }
  assert.deepEqual(client.positions()["room:chat:hist"], { offset: 3, epoch });

  // Cut, and keep the network down while 20 messages are published.
  await cut(gate, rec, first.id);
  for (let n = 4; n <= 23; n++) await send(n);
  gate.down = false;
  await rec.next((e) => e.type === "connected" && e.reconnected, "the reconnect");
  const verdict = await rec.next((e) => e.type === "recovered" && e.streams.some((s) => s.stream === "room:chat:hist"), "recovery");
  const room = verdict.streams.find((s) => s.stream === "room:chat:hist");
  assert.equal(room.recovered, true);
  assert.equal(room.replayed, 20);
  const replayed = rec.seen.filter(isMessage("hist"));
  assert.deepEqual(replayed.map((m) => m.data.n), Array.from({ length: 20 }, (_, i) => i + 4));
  assert.ok(replayed.every((m) => m.encrypted), "replays are sealed");
  assert.deepEqual(replayed.map((m) => m.position.offset), Array.from({ length: 20 }, (_, i) => i + 4));
  for (const m of replayed) rec.seen.splice(rec.seen.indexOf(m), 1);
  await send(24);
  const live = await rec.next(isMessage("hist"), "live after the replay");
  assert.equal(live.position.offset, 24);
  client.close();
});

test("recover on another instance: 500 messages published across two instances while cut, each once, in order, sealed", LIMIT, async (t) => {
  const gate = { down: false, sockets: [] };
  const { client, rec } = open(t, { token: "ines-js", recover: true, WebSocket: gated(gate) });
  const first = await client.connect();
  await client.join(["chat:hist-twin"]);
  const joined = await rec.next((e) => e.type === "recovered" && e.streams.some((s) => s.stream === "room:chat:hist-twin"), "join answer");
  const epoch = joined.streams.find((s) => s.stream === "room:chat:hist-twin").epoch;
  const send = (n) => admin(n % 2 ? ADMIN : TWIN_ADMIN, "POST", "/socket/room/chat:hist-twin/send", { topic: "twin", data: { n } });
  assert.equal((await send(1)).body.offset, 1);
  assert.deepEqual((await rec.next(isMessage("twin"), "live 1")).position, { stream: "room:chat:hist-twin", offset: 1, epoch });

  await cut(gate, rec, first.id);
  for (let n = 2; n <= 501; n++) assert.equal((await send(n)).body.offset, n);
  gate.url = TWIN_URL;
  gate.down = false;
  await rec.next((e) => e.type === "connected" && e.reconnected, "the reconnect, to the twin");
  const verdict = await rec.next((e) => e.type === "recovered" && e.streams.some((s) => s.stream === "room:chat:hist-twin"), "recovery");
  const room = verdict.streams.find((s) => s.stream === "room:chat:hist-twin");
  assert.equal(room.recovered, true);
  assert.equal(room.replayed, 500);
  assert.equal(room.epoch, epoch);
  const replayed = rec.seen.filter(isMessage("twin")).filter((m) => m.position.offset > 1);
  assert.deepEqual(replayed.map((m) => m.data.n), Array.from({ length: 500 }, (_, i) => i + 2));
  assert.ok(replayed.every((m) => m.encrypted), "replays are sealed");
  const clients = (await admin(TWIN_ADMIN, "GET", "/socket/clients")).body.clients ?? [];
  assert.ok(clients.length >= 1, "the client is now on the twin");
  client.close();
});
