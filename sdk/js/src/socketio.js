// The Socket.IO transport: a WebSocket-shaped object over a socket.io-client socket, so that
// SealwireClient runs the very same hardened flow (docs/PROTOCOL.md sections 10 and 13) over
// a server's `/io` endpoint. The socket asks for the hardened profile in its handshake `auth`
// (`{profile: "sealwire-v2"}`, never a token), and every frame of the `/ws` protocol travels
// as the one argument of event `sealwire`, both ways. `sealwire:close {code, reason}` says what
// a WebSocket close frame says; a disconnect without it is a network failure (1006).
//
// socket.io-client is not bundled: pass its `io` function (`options.io`); in Node it is
// otherwise imported on first use (an optional peer dependency).

/** The event carrying one `/ws` frame, both directions. */
export const FRAME_EVENT = "sealwire";
/** The event carrying the close code, just before the server's disconnect. */
export const CLOSE_EVENT = "sealwire:close";
/** What the handshake `auth` holds: the profile, nothing else. */
const HARDENED_AUTH = Object.freeze({ profile: "sealwire-v2" });

/**
 * Splits a server URL into socket.io-client's `(uri, path)`: `https://rt.example.com/io` gives
 * `https://rt.example.com` and `/io`; `ws(s)://` becomes `http(s)://`. `path` (an option)
 * overrides the URL's path; an empty path means `/io`.
 */
export function socketIoTarget(url, path) {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  else if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new TypeError(`not a ws(s) or http(s) URL: ${url}`);
  }
  const fromUrl = u.pathname.replace(/\/+$/, "");
  return { uri: `${u.protocol}//${u.host}`, path: path ?? (fromUrl === "" ? "/io" : fromUrl) };
}

/** socket.io-client's `io`, imported (Node, bundlers) when the application did not pass it. */
export async function loadIo() {
  const mod = await import("socket.io-client");
  const io = mod.io ?? mod.default?.io ?? mod.default;
  if (typeof io !== "function") throw new TypeError("socket.io-client exports no io()");
  return io;
}

/**
 * One Socket.IO connection that looks like a WebSocket to SealwireClient: `send(text)`,
 * `close(code)`, `readyState`, and `onopen`/`onmessage`/`onclose`/`onerror`.
 */
export class SocketIoSocket {
  /**
   * @param {Function} io socket.io-client's `io`
   * @param {string} url the server's Socket.IO URL (`https://host/io`)
   * @param {object} [options] `path`, `transports` (default socket.io-client's), and
   *   `ioOptions` passed on to `io()` (headers, timeouts; never `auth`)
   */
  constructor(io, url, options = {}) {
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.closeInfo = null;
    const { uri, path } = socketIoTarget(url, options.path);
    const ioOptions = {
      ...(options.ioOptions ?? {}),
      path,
      auth: { ...HARDENED_AUTH },
      // SealwireClient reconnects itself, with a new handshake every time.
      reconnection: false,
      forceNew: true,
    };
    if (options.transports) ioOptions.transports = options.transports;
    const socket = io(uri, ioOptions);
    this.socket = socket;
    socket.on("connect", () => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({ type: "open" });
    });
    socket.on(FRAME_EVENT, (frame) => {
      if (this.readyState !== 1) return;
      this.onmessage?.({ type: "message", data: JSON.stringify(frame) });
    });
    socket.on(CLOSE_EVENT, (info) => {
      if (Number.isInteger(info?.code)) {
        this.closeInfo = { code: info.code, reason: typeof info.reason === "string" ? info.reason : "" };
      }
    });
    socket.on("connect_error", (err) => {
      this.onerror?.({ type: "error", error: err });
      this.finish(1006, String(err?.message ?? err));
    });
    socket.on("disconnect", (why) => {
      if (this.closeInfo) this.finish(this.closeInfo.code, this.closeInfo.reason);
      else this.finish(why === "io client disconnect" ? 1000 : 1006, why);
    });
  }

  /** Sends one `/ws` frame (JSON text) as a `sealwire` event. */
  send(text) {
    if (this.readyState !== 1) throw new Error("the Socket.IO connection is not open");
    this.socket.emit(FRAME_EVENT, JSON.parse(text));
  }

  /** Disconnects (the code stays local: Socket.IO's disconnect carries none). */
  close(code = 1000, reason = "") {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    this.closeInfo ??= { code, reason };
    this.socket.disconnect();
    this.finish(code, reason);
  }

  finish(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.socket.off();
    // socket.io-client keeps a disconnected socket's Manager open when it alone decided;
    // close it so no engine.io connection outlives this object.
    try {
      this.socket.io?.engine?.close?.();
    } catch {
      // Already closed.
    }
    this.onclose?.({ type: "close", code, reason, wasClean: code !== 1006 });
  }
}
