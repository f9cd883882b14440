// Socket.IO fan-out load tool: N socket.io-client clients (websocket transport) authenticate
// the IGNIS way, then `count` broadcasts go out through the server's REST API
// (`POST {rest}/broadcast {topic, data}`, the same endpoint on sealwire and on the IGNIS
// anchor), and every client counts what it receives. Prints one JSON line: delivered msgs/s,
// losses, latency from each publish request (p50/p99/max), the p99 over clients of the first
// delivery, and the server's CPU per delivered message (from /proc/<pid>/stat).
//
//   node benches/sio/load.mjs --url http://127.0.0.1:8080 --path /io --rest http://127.0.0.1:8080/socket \
//       --server-pid PID [--admin-token T] [--clients 500] [--count 200] [--size 200] [--concurrency 32]
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url ?? "http://127.0.0.1:8080";
const path = args.path ?? "/io";
const rest = args.rest ?? `${url}/socket`;
const clients = Number(args.clients ?? 500);
const count = Number(args.count ?? 200);
const size = Number(args.size ?? 200);
const concurrency = Number(args.concurrency ?? 32);
const pid = args["server-pid"];
const label = args.label ?? "";
const headers = { "content-type": "application/json" };
if (args["admin-token"]) headers.authorization = `Bearer ${args["admin-token"]}`;

const TICK = 100; // clock ticks per second on Linux
function cpuSecs() {
  if (!pid) return null;
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICK;
}
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))] : 0);

const sockets = [];
const arrivals = []; // per client: arrival times (ms, performance.now)
const sentAt = new Map(); // seq -> request time
let delivered = 0;
let lastDelivery = 0;

async function connectOne(i) {
  const socket = io(url, { path, transports: ["websocket"], auth: { token: `load-${i}` }, reconnection: false });
  const mine = [];
  arrivals.push(mine);
  sockets.push(socket);
  socket.on("bench", (d) => {
    const now = performance.now();
    mine.push(now - (sentAt.get(d?.s) ?? now));
    delivered++;
    lastDelivery = now;
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client ${i}: no authenticated`)), 20_000);
    socket.on("connect", () => socket.emit("authenticate"));
    socket.on("authenticated", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on("unauthenticated", (e) => reject(new Error(`client ${i}: ${JSON.stringify(e)}`)));
    socket.on("connect_error", (e) => reject(e));
  });
}

const t0 = performance.now();
for (let i = 0; i < clients; i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, clients - i) }, (_, k) => connectOne(i + k)));
}
const connectSecs = (performance.now() - t0) / 1000;
await new Promise((r) => setTimeout(r, 1000));

const pad = "x".repeat(Math.max(0, size - 40));
const cpu0 = cpuSecs();
const start = performance.now();
let next = 0;
async function worker() {
  while (next < count) {
    const s = next++;
    sentAt.set(s, performance.now());
    const res = await fetch(`${rest}/broadcast`, { method: "POST", headers, body: JSON.stringify({ topic: "bench", data: { s, p: pad } }) });
    await res.arrayBuffer();
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
const expected = clients * count;
let last = -1;
let stalled = performance.now();
while (delivered < expected) {
  if (delivered !== last) {
    last = delivered;
    stalled = performance.now();
  } else if (performance.now() - stalled > 5000) break;
  await new Promise((r) => setTimeout(r, 20));
}
const cpu1 = cpuSecs();
const secs = (lastDelivery - start) / 1000;
const all = arrivals.flat().sort((a, b) => a - b);
const firsts = arrivals.filter((a) => a.length).map((a) => Math.min(...a)).sort((a, b) => a - b);
const serverCpu = cpu0 === null ? null : cpu1 - cpu0;
console.log(
  JSON.stringify({
    tool: "sealwire-sio-load",
    label,
    clients,
    count,
    size,
    connect_secs: connectSecs,
    expected,
    delivered,
    lost: expected - delivered,
    delivered_per_s: delivered / Math.max(secs, 1e-9),
    latency_from_request_ms: { p50: pct(all, 0.5), p99: pct(all, 0.99), max: pct(all, 1) },
    first_delivery_ms: { p50: pct(firsts, 0.5), p99: pct(firsts, 0.99) },
    server_cpu_secs: serverCpu,
    server_cpu_us_per_msg: serverCpu === null ? null : (serverCpu * 1e6) / Math.max(delivered, 1),
  }),
);
for (const s of sockets) s.close();
process.exit(0);
