// Socket.IO fan-out load tool: N socket.io-client clients (websocket transport) authenticate
// the IGNIS way, then `count` broadcasts go out through the server's REST API
// (`POST {rest}/broadcast {topic, data}`, the same endpoint on sealwire and on the IGNIS
// anchor), and every client counts what it receives. Prints one JSON line: delivered msgs/s,
// losses, out-of-order deliveries, latency from each publish request (p50/p99/max), the p99
// over clients of the first delivery, and the server's CPU per delivered message (from
// /proc/<pid>/stat).
//
// The clients are spread over `--procs` Node processes (default 1), each with its share, so
// that one process receiving every message is not what limits the figure; this process only
// publishes and adds up what they report.
//
// `--encrypted`: every client offers a P-256 `publicKey` in its handshake `auth`, derives the
// compatibility-profile key from `serverPublicKey`/`salt` of `authenticated` (sdk/js) and opens
// every `encrypted {iv, ct}` event with WebCrypto. A message that fails to open counts as lost
// (`decrypt_failures`), and so does a plaintext event (`plaintext_events`).
//
// `out_of_order` counts deliveries whose sequence number is not above the highest one the
// client saw before (as the Rust load tool does); with more than one request in flight the
// server receives the publications in no fixed order, so it means something with
// `--concurrency 1` only.
//
// `--door ws`: the same clients, handshake, WebCrypto and burst over sealwire's WebSocket door
// (`--ws-path`, default `/ws`) instead of Socket.IO, so that the two doors of one server are
// compared under exactly the same client load (a client's speed decides how many messages
// each server write carries).
//
//   node benches/sio/load.mjs --url http://127.0.0.1:8080 --path /io --rest http://127.0.0.1:8080/socket \
//       --server-pid PID [--admin-token T] [--clients 500] [--count 200] [--size 200] [--concurrency 32] \
//       [--procs 1] [--encrypted] [--door io|ws] [--ws-path /ws]
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);
const args = Object.fromEntries(
  argv.reduce((acc, a, i, all) => {
    if (!a.startsWith("--")) return acc;
    const next = all[i + 1];
    return [...acc, [a.slice(2), next === undefined || next.startsWith("--") ? "1" : next]];
  }, []),
);
const url = args.url ?? "http://127.0.0.1:8080";
const path = args.path ?? "/io";
const encrypted = args.encrypted === "1" || args.encrypted === "true";
const door = args.door ?? "io";
const wsPath = args["ws-path"] ?? "/ws";
if (door !== "io" && door !== "ws") throw new Error(`--door must be io or ws, not ${door}`);

/** Milliseconds since the epoch, sub-millisecond, comparable between processes. */
const wallMs = () => performance.timeOrigin + performance.now();
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))] : 0);

if (args.role === "clients") await runClients();
else await runMain();

// One process's share of the clients: `--from` to `--to` (exclusive).
async function runClients() {
  const { io } = await import("socket.io-client");
  const { WebSocket } = await import("ws");
  const { ClientHandshake } = await import("../../sdk/js/src/crypto.js");
  const from = Number(args.from);
  const to = Number(args.to);
  const mine = [];
  const sockets = [];
  let delivered = 0;
  let lastDelivery = 0;
  let decryptFailures = 0;
  let plaintextEvents = 0;
  let outOfOrder = 0;

  /** A `/ws` client that looks like a Socket.IO one to the counting code below: `on(event)`
   * handlers get the frame's `data`, `onAny` every event name, `emit("authenticate")` sends the
   * same credentials the Socket.IO handshake carries. */
  function wsSocket(auth) {
    const target = new URL(wsPath, url.replace(/^http/, "ws"));
    const ws = new WebSocket(target);
    const handlers = new Map();
    const any = [];
    let authenticated = false;
    const fire = (name, data) => {
      for (const f of handlers.get(name) ?? []) f(data);
    };
    // A server frame, as socket.io-client reports an event (`onAny` sees these only).
    const event = (name, data) => {
      for (const f of any) f(name, data);
      fire(name, data);
    };
    ws.on("open", () => fire("connect"));
    ws.on("error", (e) => fire("connect_error", e));
    ws.on("message", (raw) => {
      let frame;
      try {
        frame = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (frame.event === "connected") {
        authenticated = true;
        event("authenticated", frame.data);
      } else if (frame.event === "error" && !authenticated) event("unauthenticated", frame.data);
      else event(frame.event, frame.data);
    });
    return {
      on(name, f) {
        handlers.set(name, [...(handlers.get(name) ?? []), f]);
      },
      onAny(f) {
        any.push(f);
      },
      emit(name) {
        if (name === "authenticate") ws.send(JSON.stringify({ event: "authenticate", data: auth }));
      },
      close() {
        ws.close();
      },
    };
  }

  async function connectOne(i) {
    const hs = encrypted ? await ClientHandshake.create({ profile: "compat" }) : null;
    const auth = { token: `load-${i}` };
    if (hs) auth.publicKey = hs.publicKeyBase64;
    const socket =
      door === "ws"
        ? wsSocket(auth)
        : io(url, { path, transports: ["websocket"], auth, reconnection: false, forceNew: true });
    sockets.push(socket);
    const client = { lat: [], prev: -1 };
    mine.push(client);
    const count = (d, at) => {
      if (typeof d?.s !== "number" || typeof d?.t !== "number") return;
      client.lat.push(at - d.t);
      if (d.s <= client.prev) outOfOrder++;
      client.prev = Math.max(client.prev, d.s);
      delivered++;
      lastDelivery = Math.max(lastDelivery, wallMs());
    };
    let session = null;
    // Opened one after another, so a client sees its messages in the order they arrived.
    let chain = Promise.resolve();
    if (hs) {
      socket.on("encrypted", (data) => {
        const at = wallMs();
        chain = chain.then(async () => {
          try {
            const inner = JSON.parse(await (await session).session.open(data));
            if (inner.event === "bench") count(inner.data, at);
          } catch {
            decryptFailures++;
          }
        });
      });
      socket.onAny((name) => {
        if (name !== "encrypted" && name !== "authenticated") plaintextEvents++;
      });
    } else {
      socket.on("bench", (d) => count(d, wallMs()));
    }
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client ${i}: no authenticated`)), 20_000);
      socket.on("connect", () => socket.emit("authenticate"));
      socket.on("authenticated", (payload) => {
        clearTimeout(timer);
        if (hs) {
          session = hs.finish(payload);
          session.then(resolve, reject);
        } else resolve();
      });
      socket.on("unauthenticated", (e) => reject(new Error(`client ${i}: ${JSON.stringify(e)}`)));
      socket.on("connect_error", (e) => reject(e));
    });
  }

  for (let i = from; i < to; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, to - i) }, (_, k) => connectOne(i + k)));
  }
  process.send({ type: "ready" });
  const { count } = await new Promise((resolve) => process.once("message", resolve));
  const expected = (to - from) * count;
  let last = -1;
  let stalled = performance.now();
  while (delivered < expected) {
    if (delivered !== last) {
      last = delivered;
      stalled = performance.now();
    } else if (performance.now() - stalled > 5000) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const lat = mine.flatMap((c) => c.lat);
  const firsts = mine.filter((c) => c.lat.length).map((c) => Math.min(...c.lat));
  for (const s of sockets) s.close();
  // Disconnect only once the (large) result has left, or it may be lost.
  process.send({ type: "result", delivered, lastDelivery, decryptFailures, plaintextEvents, outOfOrder, lat, firsts }, () =>
    process.disconnect(),
  );
}

async function runMain() {
  const rest = args.rest ?? `${url}/socket`;
  const clients = Number(args.clients ?? 500);
  const count = Number(args.count ?? 200);
  const size = Number(args.size ?? 200);
  const concurrency = Number(args.concurrency ?? 32);
  const procs = Math.max(1, Math.min(Number(args.procs ?? 1), clients));
  const pid = args["server-pid"];
  const label = args.label ?? "";
  const headers = { "content-type": "application/json" };
  if (args["admin-token"]) headers.authorization = `Bearer ${args["admin-token"]}`;

  const TICK = 100; // clock ticks per second on Linux
  const cpuSecs = () => {
    if (!pid) return null;
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICK;
  };

  const self = fileURLToPath(import.meta.url);
  const passOn = ["--url", url, "--path", path, "--door", door, "--ws-path", wsPath, ...(encrypted ? ["--encrypted", "1"] : [])];
  const children = Array.from({ length: procs }, (_, k) => {
    const from = Math.floor((clients * k) / procs);
    const to = Math.floor((clients * (k + 1)) / procs);
    const child = fork(self, [...passOn, "--role", "clients", "--from", `${from}`, "--to", `${to}`]);
    const next = () =>
      new Promise((resolve, reject) => {
        child.once("message", resolve);
        child.once("exit", (code) => reject(new Error(`client process ${k} exited (${code})`)));
      });
    return { child, next };
  });

  const t0 = performance.now();
  await Promise.all(children.map((c) => c.next()));
  const connectSecs = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 1000));

  const pad = "x".repeat(Math.max(0, size - 60));
  const results = children.map((c) => c.next());
  const cpu0 = cpuSecs();
  const start = wallMs();
  let next = 0;
  async function worker() {
    while (next < count) {
      const s = next++;
      const body = JSON.stringify({ topic: "bench", data: { s, t: wallMs(), p: pad } });
      const res = await fetch(`${rest}/broadcast`, { method: "POST", headers, body });
      await res.arrayBuffer();
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  for (const c of children) c.child.send({ count });
  const parts = await Promise.all(results);
  const cpu1 = cpuSecs();

  const sum = (key) => parts.reduce((acc, p) => acc + p[key], 0);
  const delivered = sum("delivered");
  const expected = clients * count;
  const secs = (Math.max(...parts.map((p) => p.lastDelivery)) - start) / 1000;
  const all = Float64Array.from(parts.flatMap((p) => p.lat)).sort();
  const firsts = Float64Array.from(parts.flatMap((p) => p.firsts)).sort();
  const serverCpu = cpu0 === null ? null : cpu1 - cpu0;
  console.log(
    JSON.stringify({
      tool: "sealwire-sio-load",
      label,
      encrypted,
      door,
      procs,
      clients,
      count,
      size,
      connect_secs: connectSecs,
      expected,
      delivered,
      lost: expected - delivered,
      decrypt_failures: sum("decryptFailures"),
      plaintext_events: sum("plaintextEvents"),
      out_of_order: sum("outOfOrder"),
      delivered_per_s: delivered / Math.max(secs, 1e-9),
      latency_from_request_ms: { p50: pct(all, 0.5), p99: pct(all, 0.99), max: pct(all, 1) },
      first_delivery_ms: { p50: pct(firsts, 0.5), p99: pct(firsts, 0.99) },
      server_cpu_secs: serverCpu,
      server_cpu_us_per_msg: serverCpu === null ? null : (serverCpu * 1e6) / Math.max(delivered, 1),
    }),
  );
  process.exit(0);
}
