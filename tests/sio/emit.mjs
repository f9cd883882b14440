// Publishes through the real @socket.io/redis-emitter for tests/socketio.rs.
// Usage: node emit.mjs <redis-port> '<ops JSON>'; each op is one of
//   {"op":"emit","to":["room"],"except":["room"],"event":"e","args":[...]}
//   {"op":"join","in":["room"],"rooms":["r"]}   {"op":"leave","in":["room"],"rooms":["r"]}
import { Emitter } from "@socket.io/redis-emitter";
import { Redis } from "ioredis";

const [port, opsJson] = process.argv.slice(2);
const redis = new Redis({ host: "127.0.0.1", port: Number(port), lazyConnect: true });
await redis.connect();
const emitter = new Emitter(redis);
for (const op of JSON.parse(opsJson)) {
  let target = emitter;
  for (const room of op.to ?? op.in ?? []) target = target.to(room);
  for (const room of op.except ?? []) target = target.except(room);
  if (op.op === "emit") target.emit(op.event, ...(op.args ?? []));
  else if (op.op === "join") target.socketsJoin(op.rooms);
  else if (op.op === "leave") target.socketsLeave(op.rooms);
}
await redis.quit();
