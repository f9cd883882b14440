// The IGNIS SocketIOClientHelper (@venizia/ignis-helpers) against sealwire, for
// tests/socketio.rs. Usage: node ignis_client.mjs <http://host:port> <token> <room>
// Prints one JSON line per callback: connected, authenticated, echo (after joining <room>,
// an echoed `sync` proves the join was handled), news {data}, unauthenticated {message},
// disconnected {reason}; exits after `news` or a disconnect.
// The client helper's own file: the `socket-io` entry point also loads the server helper and
// its peer dependencies (socket.io, the Redis adapter), which a client does not need.
import clientHelper from "./node_modules/@venizia/ignis-helpers/dist/modules/socket/socket-io/client/helper.js";

const { SocketIOClientHelper } = clientHelper;

const [host, token, room] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const helper = new SocketIOClientHelper({
  identifier: "sealwire-test",
  host,
  options: {
    path: "/io",
    transports: ["websocket"],
    extraHeaders: { authorization: `Bearer ${token}` },
    reconnection: false,
  },
  onConnected: () => {
    out({ type: "connected" });
    helper.authenticate();
  },
  onAuthenticated: () => {
    out({ type: "authenticated" });
    helper.subscribe({ event: "echo", handler: (d) => out({ type: "echo", data: d }) });
    helper.subscribe({
      event: "news",
      handler: (d) => {
        out({ type: "news", data: d });
        helper.disconnect();
      },
    });
    helper.joinRooms({ rooms: [room] });
    helper.emit({ topic: "sync", data: "joined" });
  },
  onUnauthenticated: (message) => out({ type: "unauthenticated", message }),
  onDisconnected: (reason) => {
    out({ type: "disconnected", reason });
    setTimeout(() => process.exit(0), 50);
  },
  onError: (e) => out({ type: "error", message: String(e?.message ?? e) }),
});
setTimeout(() => process.exit(1), 10000);
