// The sealwire SDK's SocketIOClientHelper (sdk/js/src/helper.js: the IGNIS helper's method
// names over the hardened Socket.IO transport) against sealwire, for tests/socketio.rs; the
// same script shape as ignis_client.mjs. Usage:
//   node sealwire_helper.mjs <http://host:port> <token> <room> [<pinned identity key>]
// Prints one JSON line per callback: connected, authenticated, echo (after joining <room>,
// an echoed `sync` proves the join was handled), news {data}, unauthenticated {message},
// disconnected {reason}; exits after `news` or a disconnect.
import { io } from "socket.io-client";
import { SocketIOClientHelper } from "../../sdk/js/src/index.js";

const [host, token, room, pin] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const helper = new SocketIOClientHelper({
  identifier: "sealwire-test",
  host,
  io,
  token,
  pinnedServerKeys: pin ? [pin] : [],
  options: { path: "/io", transports: ["websocket"] },
  client: { reconnect: { enabled: false } },
  onConnected: () => {
    out({ type: "connected", state: helper.getState() });
    helper.authenticate();
  },
  onAuthenticated: () => {
    out({ type: "authenticated" });
    helper.subscribe({ event: "echo", handler: (d) => out({ type: "echo", data: d }) });
    // A second handler is ignored unless asked for.
    helper.subscribe({ event: "echo", handler: () => out({ type: "duplicate" }) });
    helper.subscribeMany({
      events: {
        news: (d) => {
          out({ type: "news", data: d });
          helper.disconnect();
        },
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
