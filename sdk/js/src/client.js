// The sealwire client for browsers (and any runtime with WebSocket and WebCrypto): connect,
// handshake, authenticate, then events in, events out, with session refreshes and reconnects.
//
// One connection at a time. Everything the client does on a connection runs through two
// promise chains, one outbound and one inbound, so records are sealed and opened strictly in
// order although WebCrypto is asynchronous.
//
// Hardened profile (`sealwire-v2`, docs/PROTOCOL.md section 10): the client sends a plaintext
// `hello` with its public key only, checks the server's `hello` (profile, pins, signature,
// key confirmation) and only then sends its token, sealed (c2s record 1, after the
// confirmation at record 0). The server's `connected` arrives sealed and must repeat the
// hello's client id. A plaintext `connected`, or a `hello` without the profile, is a downgrade
// and ends the attempt.
//
// Room keys (`sealwire-room-v1`, section 14, on by default with the hardened profile): the
// sealed `authenticate` asks for them, the sealed `connected` says whether the server uses
// them. Grants (`room-key`) then arrive as sealed records and go to the connection's
// RoomKeyring, never to the application; publications to a keyed room arrive as
// `room-encrypted` frames outside the record layer, and the keyring opens them. A room record
// that fails any check ends the connection as a record that does not open does.

import { ClientHandshake, CryptoError, HardenedSession, defaultSubtle } from "./crypto.js";
import { fromClose, reason } from "./reason.js";
import {
  ROOM_ENCRYPTED_EVENT,
  ROOM_KEYS,
  ROOM_KEY_EVENT,
  ROOM_RECORDS_BINARY,
  RoomKeyring,
  parseBinaryRoomRecord,
} from "./room.js";
import { SocketIoSocket, loadIo } from "./socketio.js";

const MAX_EVENT_CHARS = 256;
/** Event names the application may not send itself (protocol events). */
const RESERVED = new Set([
  "authenticate",
  "connected",
  "encrypted",
  "error",
  "hello",
  "refresh",
  "refreshed",
  "recovered",
  "join",
  "leave",
  "heartbeat",
  "disconnect",
  ROOM_KEY_EVENT,
  ROOM_ENCRYPTED_EVENT,
]);
/** The protocol's own events from the server: never an application's message (a server
 * does not let an application send one), so one out of place is ignored. */
const PROTOCOL_OUTBOUND = new Set([
  "authenticate",
  "connected",
  "encrypted",
  "hello",
  "refreshed",
  "recovered",
  ROOM_KEY_EVENT,
  ROOM_ENCRYPTED_EVENT,
]);
/** The server's answer to a refused `refresh` (docs/PROTOCOL.md section 11). */
const REFRESH_FAILED = "Refresh failed";
/** After a failed automatic refresh, try again only if at least this much lifetime is left. */
const MIN_RETRY_LIFETIME_MS = 1_000;

/**
 * What in socket.io-client options would carry a credential outside the sealed channel (an
 * IGNIS configuration moved as is): an `Authorization` header or a `token` query parameter,
 * at the top or per transport. `null` when there is none.
 */
function plainCredentials(ioOptions) {
  if (!ioOptions || typeof ioOptions !== "object") return null;
  const places = [["", ioOptions], ...Object.entries(ioOptions.transportOptions ?? {}).map(([k, v]) => [`transportOptions.${k}.`, v])];
  for (const [prefix, opts] of places) {
    if (!opts || typeof opts !== "object") continue;
    if (Object.keys(opts.extraHeaders ?? {}).some((h) => h.toLowerCase() === "authorization")) {
      return `${prefix}extraHeaders.Authorization`;
    }
    if (queryHasToken(opts.query)) return `${prefix}query.token`;
  }
  return null;
}

/** The query string of `url` ("" when it does not parse). */
function urlQuery(url) {
  try {
    return new URL(url).search;
  } catch {
    return "";
  }
}

/** Whether a socket.io-client `query` (a string or an object) names `token` as the server reads
 * it: the string's keys percent-decoded (`%74oken=` is `token=`). */
function queryHasToken(query) {
  if (typeof query === "string") return new URLSearchParams(query).has("token");
  return query !== null && typeof query === "object" && Object.hasOwn(query, "token");
}
/** The longest delay `setTimeout` takes (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A failure of a client call: `kind` is `config`, `invalid-event`, `queue-full`, `too-large`, `closed`,
 * `disconnected`, `token` (the token provider failed) or `refresh-failed` (the server refused
 * a refresh).
 */
/** The sealed errors by which a server refuses a hardened client's credentials, before a 4003
 * (docs/PROTOCOL.md section 10.9): the only ones that make that close final. */
const AUTH_REFUSALS = new Set(["Authentication failed", "Authentication error"]);

export class SealwireError extends Error {
  constructor(kind, message, reason) {
    super(message);
    this.name = "SealwireError";
    this.kind = kind;
    /** For `disconnected`: the reason the client stopped. */
    this.reason = reason;
  }
}

/** How a client reaches the server: `/ws` (WebSocket) or `/io` (Socket.IO, hardened only). */
const TRANSPORTS = ["websocket", "socket.io"];

const DEFAULTS = {
  transport: "websocket",
  encryption: "hardened",
  pinnedServerKeys: [],
  heartbeatInterval: 25_000,
  connectTimeout: 10_000,
  sendQueue: 1024,
  maxMessageBytes: 128 * 1024,
  captureRawFrames: false,
  recover: false,
  roomKeys: true,
  binaryRoomRecords: true,
  autoRefresh: true,
  refreshAt: 0.8,
  reconnect: {
    enabled: true,
    initialDelay: 250,
    maxDelay: 30_000,
    multiplier: 2,
    jitter: 0.5,
    maxAttempts: Infinity,
    minUptime: 5_000,
  },
};

/** Delay before reconnect attempt `attempt` (1-based) in ms, or `null` to stop. */
export function backoffDelay(policy, attempt, random = Math.random) {
  if (!policy.enabled || attempt > policy.maxAttempts) return null;
  const base = policy.initialDelay * Math.max(policy.multiplier, 1) ** (attempt - 1);
  const capped = Math.min(base, policy.maxDelay);
  const jitter = Math.min(Math.max(policy.jitter, 0), 1);
  return Math.max(0, Math.round(capped * (1 - jitter * random())));
}

/**
 * A session's remaining lifetime in ms, `expiresAt − time`, both ISO-8601 strings from the
 * server's clock (so the client's clock skew does not matter); `null` when the session has no
 * lifetime or either is unreadable.
 */
export function sessionLifetime(time, expiresAt) {
  if (typeof expiresAt !== "string" || typeof time !== "string") return null;
  const end = Date.parse(expiresAt);
  const now = Date.parse(time);
  if (!Number.isFinite(end) || !Number.isFinite(now)) return null;
  return Math.max(0, end - now);
}

/** When to refresh, in ms from now: `ratio` (default 0.8) of `expiresAt − time`, or `null`. */
export function refreshDelay(time, expiresAt, ratio = DEFAULTS.refreshAt) {
  const lifetime = sessionLifetime(time, expiresAt);
  if (lifetime === null) return null;
  return Math.floor(lifetime * Math.min(Math.max(ratio, 0), 1));
}

/**
 * A sealwire client.
 *
 * ```js
 * const client = new SealwireClient({ url: "wss://rt.example.com/ws", token: () => getJwt() });
 * client.on("message", (m) => console.log(m.event, m.data));
 * client.on("disconnected", ({ reason, retryIn }) => console.log(reason.kind, retryIn));
 * await client.connect();
 * client.join(["orders:42"]);
 * await client.send("chat:message", { text: "hi" });
 * ```
 */
export class SealwireClient {
  /**
   * @param {object} options see index.d.ts (`ClientOptions`)
   */
  constructor(options) {
    const transport = options?.transport ?? DEFAULTS.transport;
    if (!TRANSPORTS.includes(transport)) {
      throw new SealwireError("config", `transport must be websocket or socket.io, not ${transport}`);
    }
    const urlPattern = transport === "socket.io" ? /^(wss?|https?):\/\// : /^wss?:\/\//;
    if (!options || typeof options.url !== "string" || !urlPattern.test(options.url)) {
      throw new SealwireError(
        "config",
        transport === "socket.io" ? "url must be an http(s):// or ws(s):// URL" : "url must be a ws:// or wss:// URL",
      );
    }
    const leak =
      transport === "socket.io"
        ? (queryHasToken(urlQuery(options.url)) ? "the url's token parameter" : null) ??
          plainCredentials(options.socketIo?.ioOptions)
        : null;
    if (leak) {
      throw new SealwireError(
        "config",
        `${leak} would travel in the plaintext Socket.IO handshake: the token goes in \`token\`, sealed`,
      );
    }
    this.options = {
      ...DEFAULTS,
      ...options,
      reconnect: { ...DEFAULTS.reconnect, ...(options.reconnect ?? {}) },
    };
    const { encryption, token, refreshAt } = this.options;
    if (!["off", "compat", "hardened"].includes(encryption)) {
      throw new SealwireError("config", `encryption must be off, compat or hardened, not ${encryption}`);
    }
    if (encryption !== "hardened" && (this.options.pinnedServerKeys ?? []).length > 0) {
      // Pins are checked by the hardened profile only: anywhere else they would be ignored, and
      // the token would cross in the clear to a server nobody verified.
      throw new SealwireError(
        "config",
        `pinnedServerKeys need encryption: "hardened" (not ${encryption}): nothing else verifies the server`,
      );
    }
    if (token !== undefined && typeof token !== "string" && typeof token !== "function") {
      throw new SealwireError("config", "token must be a string or a function returning one");
    }
    if (typeof refreshAt !== "number" || !(refreshAt > 0 && refreshAt < 1)) {
      throw new SealwireError("config", "refreshAt must be a fraction between 0 and 1");
    }
    if (typeof this.options.roomKeys !== "boolean") {
      throw new SealwireError("config", "roomKeys must be true or false");
    }
    if (typeof this.options.binaryRoomRecords !== "boolean") {
      throw new SealwireError("config", "binaryRoomRecords must be true or false");
    }
    if (transport === "socket.io") {
      // The Socket.IO endpoint carries the hardened flow only (docs/PROTOCOL.md section 13).
      if (encryption !== "hardened") {
        throw new SealwireError("config", "the socket.io transport carries the hardened profile only");
      }
      if (this.options.io !== undefined && typeof this.options.io !== "function") {
        throw new SealwireError("config", "io must be socket.io-client's io function");
      }
      this.WebSocket = null;
    } else {
      this.WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
      if (typeof this.WebSocket !== "function") {
        throw new SealwireError("config", "no WebSocket implementation (pass options.WebSocket)");
      }
    }
    this.subtle = encryption === "off" ? null : (this.options.subtle ?? defaultSubtle());
    this.listeners = new Map();
    this.rooms = new Set();
    /** With `recover`: the last position received in each stream, `stream -> {offset, epoch}`. */
    this.streamPositions = new Map();
    this.queue = [];
    this.conn = null;
    this.info = null;
    /** What the server's last `connected` announced as its message limit. */
    this.serverMaxMessageBytes = null;
    this.attempt = 0;
    this.everConnected = false;
    this.stopped = false;
    this.started = false;
    this.retryTimer = null;
    this.firstConnect = null;
    this.io = null;
  }

  /**
   * Subscribes to `connected`, `message`, `recovered`, `serverError`, `decryptFailed`,
   * `plaintextRejected`, `refreshed`, `refreshFailed` or `disconnected`. Returns the
   * unsubscribe function.
   */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** Removes a listener added with `on`. */
  off(type, listener) {
    this.listeners.get(type)?.delete(listener);
  }

  emit(type, payload) {
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        listener(payload);
      } catch (err) {
        // A throwing listener must not break the connection; report it asynchronously.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * Opens the connection. Resolves with the connection info once authenticated (and the
   * session established): at once while connected, else at the next `connected` (during a
   * reconnect, the new connection's); retryable failures are retried under the reconnect
   * policy meanwhile. Rejects with `SealwireError("disconnected")` if the client stops first.
   */
  connect() {
    if (this.stopped) return Promise.reject(new SealwireError("closed", "the client was closed"));
    if (this.info) return Promise.resolve(this.info);
    if (!this.firstConnect) {
      this.firstConnect = {};
      this.firstConnect.promise = new Promise((resolve, reject) => {
        this.firstConnect.resolve = resolve;
        this.firstConnect.reject = reject;
      });
    }
    if (!this.started) {
      this.started = true;
      this.open();
    }
    return this.firstConnect.promise;
  }

  /** The current connection's `{id, userId, profile, encrypted, expiresAt}`, or `null`
   * between connections. */
  get connection() {
    return this.info;
  }

  /** The rooms the application asked to join and has not left (asked again after every
   * reconnect; the server's room validator decides which it gets). */
  joinedRooms() {
    return [...this.rooms];
  }

  /**
   * Sends an application event, encrypted whenever the session is. Queued (in order) while
   * the client is reconnecting. Resolves once the frame is handed to the socket. Rejects
   * with `too-large` (nothing sent, the connection unharmed) when the frame could exceed the
   * server's limit (`maxMessageBytes()`), past which the server would close the connection
   * and the message would be lost.
   */
  send(event, data = null) {
    if (typeof event !== "string" || event.length === 0 || [...event].length > MAX_EVENT_CHARS || RESERVED.has(event)) {
      return Promise.reject(new SealwireError("invalid-event", `invalid event name ${JSON.stringify(event)}`));
    }
    const envelope = JSON.stringify({ event, data });
    const limit = this.maxMessageBytes();
    const bound = this.frameBound(envelope, limit);
    if (bound > limit) {
      return Promise.reject(new SealwireError("too-large", `message of up to ${bound} bytes on the wire (max ${limit})`));
    }
    return this.enqueue(envelope);
  }

  /** The largest message the server takes: what its last `connected` announced, else the
   * `maxMessageBytes` option (a server that announces nothing). */
  maxMessageBytes() {
    return this.serverMaxMessageBytes ?? this.options.maxMessageBytes;
  }

  /** At most how many bytes `envelope` takes on the wire, sealed when the session is (or,
   * between connections, will be) encrypted: base64 of the ciphertext and tag, and the
   * record's fields and framing. */
  frameBound(envelope, limit) {
    // UTF-8 takes at most 3 bytes per UTF-16 unit; count exactly only near the limit.
    const rough = envelope.length * 3;
    const bytes = rough * 2 < limit ? rough : new TextEncoder().encode(envelope).length;
    const encrypted = this.conn?.ready ? this.conn.session !== null : this.options.encryption !== "off";
    return encrypted ? 4 * Math.ceil((bytes + 16) / 3) + 128 : bytes + 32;
  }

  /**
   * With `recover`: the last position received in each stream (`{stream: {offset, epoch}}`),
   * as sent on the next reconnect.
   */
  positions() {
    return Object.fromEntries([...this.streamPositions].map(([s, p]) => [s, { ...p }]));
  }

  /** The `recover` field of a join of `rooms` (the positions held in their streams). */
  recoverFor(rooms) {
    const recover = {};
    for (const r of rooms) {
      const p = this.streamPositions.get(`room:${r}`);
      if (p) recover[`room:${r}`] = { ...p };
    }
    return recover;
  }

  /** The data of a join of `rooms`, with the positions to recover when `recover` is on. */
  joinData(rooms) {
    return this.options.recover ? { rooms, recover: this.recoverFor(rooms) } : { rooms };
  }

  /**
   * Records a position: a later offset, or any offset of another epoch. An unheld position
   * (epoch "") is recorded only where none is held: it marks a stream the server could not
   * track this client in, and never replaces a position the client has.
   */
  advance(stream, offset, epoch) {
    if (typeof stream !== "string" || !Number.isSafeInteger(offset) || typeof epoch !== "string") return;
    const held = this.streamPositions.get(stream);
    if (held && ((held.epoch === epoch && held.offset >= offset) || epoch === "")) return;
    this.streamPositions.set(stream, { offset, epoch });
  }

  /** Asks to join `rooms` (the server's room validator decides); remembered for reconnects. */
  join(rooms) {
    const list = roomList(rooms);
    if (!list) return Promise.reject(new SealwireError("config", "room names must be non-empty strings"));
    for (const r of list) this.rooms.add(r);
    return this.roomChange(() => JSON.stringify({ event: "join", data: this.joinData(list) }));
  }

  /**
   * Leaves `rooms` (no longer joined after a reconnect). Messages the server sent before it
   * handled the leave still arrive, as on any path; a room key stays in the keyring until the
   * room's next grant or the end of the connection, so that a leave the server refused (the
   * client is still a member) loses nothing. The server starts a new epoch at the room's next
   * publication, so the key opens nothing sent after the leave took effect.
   */
  leave(rooms) {
    const list = roomList(rooms);
    if (!list) return Promise.reject(new SealwireError("config", "room names must be non-empty strings"));
    for (const r of list) this.rooms.delete(r);
    return this.roomChange(() => JSON.stringify({ event: "leave", data: { rooms: list } }));
  }

  /**
   * Sends a join or leave while a connection is up. Between connections there is nothing to
   * send: every connection starts by joining the rooms joined and not left (sending the
   * change as well would join twice, and recover twice).
   */
  roomChange(envelope) {
    if (this.stopped) return Promise.reject(new SealwireError("closed", "the client was closed"));
    if (!this.conn?.ready) return Promise.resolve();
    return this.enqueue(envelope());
  }

  /**
   * Refreshes the session now with a new token from the token provider (sealed on an
   * encrypted session). Resolves with the server's `refreshed` payload
   * `{userId, time, expiresAt}`; rejects with `SealwireError("refresh-failed")` when the
   * server refuses it (the session then keeps its current expiry), `token` when the provider
   * fails, `disconnected` when there is no connection. The client also does this on its own
   * at `refreshAt` of each session's lifetime when `token` is a function.
   */
  refresh() {
    const conn = this.conn;
    if (!conn?.ready) return Promise.reject(new SealwireError("disconnected", "not connected"));
    return this.refreshOn(conn);
  }

  /** Closes the connection for good (sends `disconnect` first when connected). */
  close() {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const conn = this.conn;
    if (conn?.ready) {
      conn.sendChain = conn.sendChain.then(async () => {
        try {
          conn.ws.send(await conn.outbound(JSON.stringify({ event: "disconnect", data: null })));
        } catch {
          // Closing anyway.
        }
      });
      conn.sendChain.finally(() => this.endConnection(conn, reason("client-closed"), 1000));
    } else if (conn) {
      this.endConnection(conn, reason("client-closed"), 1000);
    } else {
      this.stop(reason("client-closed"));
    }
  }

  enqueue(envelope) {
    if (this.stopped) return Promise.reject(new SealwireError("closed", "the client was closed"));
    const conn = this.conn;
    if (conn?.ready && this.queue.length === 0) return this.transmit(conn, envelope);
    if (this.queue.length >= this.options.sendQueue) {
      return Promise.reject(new SealwireError("queue-full", "send queue is full"));
    }
    return new Promise((resolve, reject) => this.queue.push({ envelope, resolve, reject }));
  }

  /** Seals (when encrypted) and sends one envelope, after everything sent before it. */
  transmit(conn, envelope) {
    const step = conn.sendChain.then(async () => {
      if (conn.closed) throw new SealwireError("disconnected", "connection closed before sending");
      conn.ws.send(await conn.outbound(envelope));
    });
    conn.sendChain = step.catch(() => {});
    return step;
  }

  flushQueue(conn) {
    const pending = this.queue;
    this.queue = [];
    for (const item of pending) {
      // If the connection drops while these go out, the rest reject with `disconnected`:
      // re-queueing them behind newer messages would reorder them.
      this.transmit(conn, item.envelope).then(item.resolve, item.reject);
    }
  }

  /** The token for `purpose` (`connect` or `refresh`): the `token` option, or its result. */
  async fetchToken(purpose) {
    const source = this.options.token;
    const value = typeof source === "function" ? await source({ purpose }) : (source ?? "");
    if (typeof value !== "string") {
      throw new SealwireError("token", "the token provider returned no string");
    }
    return value;
  }

  async open() {
    if (this.stopped) return;
    const encryption = this.options.encryption;
    const conn = {
      ws: null,
      // hello (hardened: waiting for the server's hello), sealed (hardened: waiting for the
      // sealed connected), connected (compat/off: waiting for connected), ready.
      phase: encryption === "hardened" ? "hello" : "connected",
      ready: false,
      closed: false,
      handshake: null,
      session: null,
      // Hardened, when the sealed connected agreed to room keys: this connection's RoomKeyring.
      roomKeys: null,
      // The sealed connected agreed to binary room records (section 14.6).
      binaryRoomRecords: false,
      token: null,
      helloId: null,
      // The server's last `error` (explains a 4003/4004 on a compat or plaintext connection).
      lastError: null,
      // Hardened: the last `error` that arrived inside the record layer. It may explain a
      // 4004; before `connected`, it may refuse the credentials, the only thing that makes a
      // 4003 final (see closeReason).
      sealedError: null,
      sendChain: Promise.resolve(),
      recvChain: Promise.resolve(),
      timers: [],
      refreshTimer: null,
      refreshWaiters: [],
      deadline: null,
      outbound: async (envelope) => (conn.session ? conn.session.sealFrame(envelope) : envelope),
    };
    this.conn = conn;
    // One deadline for every step: the token, the key pair, the socket, both hellos and the
    // sealed `connected`.
    conn.timers.push(
      setTimeout(() => {
        if (!conn.ready) this.endConnection(conn, reason("network", "connect timeout"));
      }, this.options.connectTimeout),
    );
    try {
      const token = await this.fetchToken("connect");
      if (conn.closed) return;
      conn.token = token;
    } catch (err) {
      this.endConnection(conn, reason("token", `token provider: ${err?.message ?? err}`));
      return;
    }
    try {
      if (encryption !== "off") {
        conn.handshake = await ClientHandshake.create({
          profile: encryption,
          pinnedServerKeys: this.options.pinnedServerKeys,
          subtle: this.subtle,
          info: this.options.info,
        });
      }
      if (conn.closed) return;
      if (this.options.transport === "socket.io") {
        conn.ws = await this.openSocketIo();
        if (conn.closed) {
          conn.ws.close(1000);
          return;
        }
      } else {
        // Constructed and given its handlers in one go (no await in between).
        conn.ws = new this.WebSocket(this.options.url);
        // Binary room records (section 14.6) as bytes, not a Blob.
        conn.ws.binaryType = "arraybuffer";
      }
    } catch (err) {
      if (err instanceof SealwireError && err.kind === "config") {
        this.endConnection(conn, reason("config", err.message));
        return;
      }
      // A key pair this runtime cannot make is not something a retry fixes.
      const kind = err instanceof CryptoError ? "config" : "network";
      this.endConnection(conn, reason(kind, String(err?.message ?? err)));
      return;
    }
    const ws = conn.ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (conn.closed) return;
      if (conn.phase === "hello") {
        // No credential in the hello: the token waits until the server checks out.
        ws.send(conn.handshake.helloFrame());
        return;
      }
      const data = { token: conn.token };
      if (conn.handshake) data.publicKey = conn.handshake.publicKeyBase64;
      if (this.options.recover) data.recover = this.positions();
      conn.token = null;
      ws.send(JSON.stringify({ event: "authenticate", data }));
    };
    ws.onmessage = (msg) => {
      conn.recvChain = conn.recvChain.then(() => this.receive(conn, msg.data));
    };
    ws.onclose = (ev) => {
      // Frames that arrived before the close are handled first.
      conn.recvChain.then(() => this.endConnection(conn, this.closeReason(conn, ev), null));
    };
    ws.onerror = (ev) => {
      // Once open, a close event follows. A connection that never opened may get no close
      // event at all (Node's WebSocket on a refused connection): it ends here, as a close
      // without a close frame (1006) would end it, and is closed should it open later.
      if (!opened) {
        const detail = String(ev?.error?.message ?? ev?.message ?? "connection failed");
        conn.recvChain.then(() => this.endConnection(conn, fromClose(1006, detail, conn.lastError), 1000));
      }
    };
  }

  /**
   * Why the server closed `conn`. On a hardened connection a close code (and its reason
   * text) is not authenticated: anyone on the path can send one. So a 4003 is final only
   * when, before `connected`, the server refused the credentials in a sealed `error`
   * (`Authentication failed` / `Authentication error`: nothing else the server seals means
   * that); any other 4003 is `closed`, retried. A 4004 after the hello exchange means the
   * server could not open one of this client's records (damaged or altered on its way):
   * like a server record this client cannot open, that is `crypto`, retried with a fresh
   * handshake; before it, `handshake`, retried as well (docs/PROTOCOL.md section 10.9). No
   * unauthenticated text goes into these reasons.
   */
  closeReason(conn, ev) {
    if (conn.phase === "hello" || conn.phase === "sealed" || conn.session instanceof HardenedSession) {
      if (ev.code === 4004 && conn.phase === "hello") {
        return reason("handshake", "4004 before the hello exchange (unauthenticated)", 4004);
      }
      if (ev.code === 4004) {
        const detail = conn.sealedError === null ? "" : ` ${conn.sealedError}`;
        return reason("crypto", `the server could not open a record (4004${detail})`, 4004);
      }
      if (ev.code === 4003) {
        if (conn.phase === "sealed" && AUTH_REFUSALS.has(conn.sealedError)) return fromClose(4003, "", conn.sealedError);
        return reason("closed", "4003 not announced by a sealed refusal", 4003);
      }
      return fromClose(ev.code, ev.reason, null);
    }
    return fromClose(ev.code, ev.reason, conn.lastError);
  }

  /** A Socket.IO connection to the server, shaped like a WebSocket (see socketio.js). Its
   * events come from the network only, so handlers set after this resolves miss nothing. */
  async openSocketIo() {
    if (!this.io) {
      try {
        this.io = this.options.io ?? (await loadIo());
      } catch (err) {
        throw new SealwireError("config", `socket.io-client is not available (pass options.io): ${err?.message ?? err}`);
      }
    }
    return new SocketIoSocket(this.io, this.options.url, this.options.socketIo ?? {});
  }

  /** Whether the sealed authenticate asks for binary room records. */
  asksBinaryRecords() {
    return this.options.roomKeys && this.options.binaryRoomRecords && this.options.transport === "websocket";
  }

  async receive(conn, raw) {
    if (conn.closed) return;
    if (typeof raw !== "string") {
      // The only binary message is a binary room record, on a connection that agreed to them.
      if (conn.binaryRoomRecords && conn.session) return this.onBinaryRoomRecord(conn, raw);
      // Not authenticated (anyone on the path can inject one): retried, as a record that
      // does not open.
      this.endConnection(conn, reason("crypto", "unexpected binary frame from the server"));
      return;
    }
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      frame = null;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.event !== "string") {
      this.emit("serverError", { message: "unparseable frame from the server" });
      return;
    }
    if (conn.phase === "hello") return this.onServerHello(conn, frame);
    if (conn.phase === "connected") return this.onPlainConnected(conn, frame);
    if (frame.event === "encrypted" && conn.session) {
      let inner;
      try {
        inner = JSON.parse(await conn.session.open(frame.data));
      } catch {
        inner = null;
      }
      if (conn.closed) return;
      if (typeof inner !== "object" || inner === null || typeof inner.event !== "string") {
        this.recordFailed(conn, raw, "a record did not open");
        return;
      }
      if (conn.phase === "sealed") return this.onSealedConnected(conn, inner);
      if (inner.event === ROOM_KEY_EVENT) return this.onRoomKey(conn, inner.data, raw);
      this.deliver(conn, inner, true, raw);
      return;
    }
    if (conn.phase === "sealed" && frame.event === "connected") {
      this.endConnection(
        conn,
        reason("handshake", "downgrade: a plaintext connected on a hardened connection"),
      );
      return;
    }
    if (frame.event === ROOM_ENCRYPTED_EVENT && conn.session) return this.onRoomRecord(conn, frame.data, raw, raw);
    if (conn.session) {
      // Plaintext on an encrypted session: refused, never delivered (it could be injected).
      this.emit("plaintextRejected", { event: frame.event });
      return;
    }
    this.deliver(conn, frame, false, raw);
  }

  /** Hardened: the server's plaintext `hello`. Everything is checked before the token goes out. */
  async onServerHello(conn, frame) {
    if (frame.event === "error") {
      // E.g. `Encryption handshake failed` before the 4004 close. Plaintext: reported, but
      // it never makes a close final (closeReason).
      this.serverErrorBeforeConnected(conn, frame.data);
      return;
    }
    if (frame.event === "connected") {
      this.endConnection(conn, reason("handshake", "downgrade: the server answered hello with a plaintext connected"));
      return;
    }
    if (frame.event !== "hello") {
      // Nothing else comes before the hello; a plaintext frame here was not the server's
      // (anyone on the path can inject one) and is ignored, as in the Rust SDK: the connect
      // timeout bounds the wait for the real hello.
      return;
    }
    let done;
    try {
      done = await conn.handshake.finishHello(frame.data);
    } catch (err) {
      // Nothing in a hello is authenticated until it checks out: retried (`handshake`).
      this.endConnection(conn, reason("handshake", `${err?.kind ?? "error"}: ${err?.message ?? err}`));
      return;
    }
    if (conn.closed) return;
    conn.session = done.session;
    conn.helloId = done.id;
    conn.phase = "sealed";
    const token = conn.token;
    conn.token = null;
    try {
      // c2s record 0: the key confirmation; record 1: the credentials, sealed.
      conn.ws.send(done.confirmation);
      const data = { token };
      if (this.options.recover) data.recover = this.positions();
      if (this.options.roomKeys) {
        data.roomKeys = ROOM_KEYS;
        // Room records as binary messages (section 14.6); Socket.IO carries text only.
        if (this.options.binaryRoomRecords && this.options.transport === "websocket") data.roomRecords = ROOM_RECORDS_BINARY;
      }
      conn.ws.send(await conn.session.sealFrame(JSON.stringify({ event: "authenticate", data })));
    } catch (err) {
      this.endConnection(conn, reason("network", `send failed: ${err?.message ?? err}`));
    }
  }

  /** Hardened: the first record from the server, a sealed `connected` (or the sealed error
   * before a 4003/4004). */
  onSealedConnected(conn, inner) {
    if (inner.event === "error") {
      this.serverErrorBeforeConnected(conn, inner.data);
      conn.sealedError = conn.lastError;
      return;
    }
    if (inner.event !== "connected") {
      this.endConnection(conn, reason("protocol", `expected connected, got ${inner.event}`));
      return;
    }
    const data = inner.data ?? {};
    if (data.id !== conn.helloId) {
      this.endConnection(conn, reason("protocol", "connected names another client id than the hello"));
      return;
    }
    // Only the extension asked for, and only when asked (absent or null: per-client records).
    const roomKeys = data.roomKeys ?? null;
    if (roomKeys !== null && !(this.options.roomKeys && roomKeys === ROOM_KEYS)) {
      this.endConnection(conn, reason("protocol", `connected agrees to room keys ${JSON.stringify(roomKeys)}, not asked for`));
      return;
    }
    const roomRecords = data.roomRecords ?? null;
    if (roomRecords !== null && !(roomKeys !== null && this.asksBinaryRecords() && roomRecords === ROOM_RECORDS_BINARY)) {
      this.endConnection(conn, reason("protocol", `connected agrees to room records ${JSON.stringify(roomRecords)}, not asked for`));
      return;
    }
    if (roomKeys !== null) conn.roomKeys = new RoomKeyring({ subtle: this.subtle });
    conn.binaryRoomRecords = roomRecords !== null;
    this.established(conn, data);
  }

  /**
   * A record that did not open: reported; a hardened connection ends (its receive sequence
   * cannot skip a record, and a room record that fails is as suspect) and starts over with a
   * new handshake.
   */
  recordFailed(conn, raw, message) {
    this.emit("decryptFailed", { frameLength: raw.length });
    if (conn.session.profile !== "compat") this.endConnection(conn, reason("crypto", message));
  }

  /** A sealed `room-key` grant: to the keyring, never to the application. */
  async onRoomKey(conn, data, raw) {
    if (!conn.roomKeys) {
      this.recordFailed(conn, raw, "a room key on a connection without room keys");
      return;
    }
    try {
      await conn.roomKeys.grant(data?.room, data?.epoch, data?.key);
    } catch (err) {
      if (!conn.closed) this.recordFailed(conn, raw, `room key refused: ${err.message}`);
    }
  }

  /** A `room-encrypted` record (outside the record layer): opened by the keyring, or a failure.
   * `raw` is the frame (its `length` is reported on a failure); `captured` is what
   * `captureRawFrames` attaches (the text frame). */
  async onRoomRecord(conn, data, raw, captured) {
    let envelope = null;
    try {
      envelope = conn.roomKeys ? await conn.roomKeys.open(data) : null;
    } catch {
      envelope = null;
    }
    if (conn.closed) return;
    if (envelope === null) {
      this.recordFailed(conn, raw, conn.roomKeys ? "a room record did not open" : "a room record on a connection without room keys");
      return;
    }
    // A room record speaks for its own room's stream only: a position for any other stream
    // (which only a forger holding the epoch key could put there) is not taken.
    if (envelope.stream !== undefined && envelope.stream !== `room:${data?.room}`) {
      const { stream: _s, offset: _o, epoch: _e, ...rest } = envelope;
      envelope = rest;
    }
    this.deliver(conn, envelope, true, captured);
  }

  /** A binary room record (section 14.6): parsed, then opened like a text one. The raw frame
   * is text only: `captureRawFrames` keeps none of it. */
  async onBinaryRoomRecord(conn, raw) {
    let bytes = null;
    try {
      if (typeof Blob !== "undefined" && raw instanceof Blob) raw = await raw.arrayBuffer();
      // A view (Node's Buffer) over its own bytes, or the ArrayBuffer whole; the parser copies
      // the ciphertext out.
      bytes = ArrayBuffer.isView(raw) ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : new Uint8Array(raw);
    } catch {
      bytes = null;
    }
    if (conn.closed) return;
    const record = bytes === null ? null : parseBinaryRoomRecord(bytes);
    if (record === null) {
      this.recordFailed(conn, { length: bytes?.length ?? 0 }, "a binary message that is not a room record");
      return;
    }
    return this.onRoomRecord(conn, record, { length: bytes.length }, null);
  }

  /** Compatibility profile and plaintext clients: the plaintext `connected`. */
  async onPlainConnected(conn, frame) {
    if (frame.event === "error") {
      this.serverErrorBeforeConnected(conn, frame.data);
      return;
    }
    if (frame.event !== "connected") {
      this.endConnection(conn, reason("protocol", `expected connected, got ${frame.event}`));
      return;
    }
    const data = frame.data ?? {};
    if (conn.handshake) {
      try {
        conn.session = (await conn.handshake.finish(data)).session;
      } catch (err) {
        // A server that does not speak the compatibility handshake: final.
        this.endConnection(conn, reason("protocol", `${err?.kind ?? "error"}: ${err?.message ?? err}`));
        return;
      }
    }
    if (conn.closed) return;
    this.established(conn, data);
  }

  serverErrorBeforeConnected(conn, data) {
    conn.lastError = typeof data?.message === "string" ? data.message : "error";
    this.emit("serverError", { message: conn.lastError });
  }

  established(conn, data) {
    // The server's own limit, when it announces one (sealwire does, in `connected`).
    if (Number.isSafeInteger(data.maxMessageBytes) && data.maxMessageBytes >= 64) {
      this.serverMaxMessageBytes = data.maxMessageBytes;
    }
    conn.ready = true;
    conn.phase = "ready";
    // The attempt count starts again only once this connection has lasted `minUptime`: one
    // that a server or the path ends right after `connected` counts as a failed attempt, so
    // its reconnects back off and stop at `maxAttempts` instead of looping at the first delay.
    conn.establishedAt = Date.now();
    // Re-joins first, then the queue, in order behind them.
    if (this.rooms.size > 0) {
      const data = this.joinData([...this.rooms]);
      this.transmit(conn, JSON.stringify({ event: "join", data })).catch(() => {});
    }
    this.flushQueue(conn);
    conn.timers.push(
      setInterval(() => {
        this.transmit(conn, JSON.stringify({ event: "heartbeat", data: {} })).catch(() => {});
      }, this.options.heartbeatInterval),
    );
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.info = {
      id: data.id,
      userId: data.userId,
      profile: conn.session?.profile ?? "off",
      encrypted: conn.session !== null,
      expiresAt: typeof data.expiresAt === "string" ? data.expiresAt : null,
    };
    this.scheduleRefresh(conn, data.time, data.expiresAt);
    this.emit("connected", { ...this.info, reconnected });
    // Whoever waits, waits for this connection; a later `connect()` waits for the next one.
    this.firstConnect?.resolve(this.info);
    this.firstConnect = null;
  }

  /** Arms the automatic refresh at `refreshAt` of `expiresAt − time` (server clock). */
  scheduleRefresh(conn, time, expiresAt) {
    clearTimeout(conn.refreshTimer);
    conn.refreshTimer = null;
    const lifetime = sessionLifetime(time, expiresAt);
    conn.deadline = lifetime === null ? null : Date.now() + lifetime;
    // A fixed token cannot renew anything: only a provider gives fresh ones.
    if (lifetime === null || !this.options.autoRefresh || typeof this.options.token !== "function") return;
    // Never sooner than a second after the last answer: a server that grants sessions with no
    // time left cannot make the client ask its token provider in a loop.
    const delay = Math.max(MIN_RETRY_LIFETIME_MS, Math.floor(lifetime * this.options.refreshAt));
    this.armRefresh(conn, Date.now() + delay);
  }

  /** Runs `autoRefresh` at `due` (ms since the epoch), in steps a timer can take. */
  armRefresh(conn, due) {
    const left = due - Date.now();
    conn.refreshTimer =
      left > MAX_TIMER_MS
        ? setTimeout(() => this.armRefresh(conn, due), MAX_TIMER_MS)
        : setTimeout(() => this.autoRefresh(conn), Math.max(0, left));
  }

  async autoRefresh(conn) {
    conn.refreshTimer = null;
    try {
      await this.refreshOn(conn);
    } catch {
      // Reported as `refreshFailed`. Try again halfway to the expiry while at least a second
      // is left, e.g. for a token service that failed for a moment.
      if (conn.closed || conn.refreshTimer !== null || conn.deadline === null) return;
      const left = conn.deadline - Date.now();
      if (left >= MIN_RETRY_LIFETIME_MS) {
        this.armRefresh(conn, Date.now() + Math.floor(left / 2));
      }
    }
  }

  async refreshOn(conn) {
    let token;
    try {
      token = await this.fetchToken("refresh");
    } catch (err) {
      const message = `token provider: ${err?.message ?? err}`;
      if (!conn.closed) this.emit("refreshFailed", { message, expiresAt: this.info?.expiresAt ?? null });
      throw new SealwireError("token", message);
    }
    if (conn.closed) throw new SealwireError("disconnected", "connection closed before the refresh");
    // Answers come in the order the refreshes were sent: the oldest waiter takes the next one.
    const waiter = {};
    const answer = new Promise((resolve, reject) => Object.assign(waiter, { resolve, reject }));
    // The answer may be settled (the connection ended, the server refused) while the refresh
    // is still being sealed and sent, before the caller holds it: marked handled now so that
    // an early rejection is not an unhandled one (which ends a Node process). The caller
    // still gets it through the returned promise.
    answer.catch(() => {});
    conn.refreshWaiters.push(waiter);
    try {
      await this.transmit(conn, JSON.stringify({ event: "refresh", data: { token } }));
    } catch (err) {
      const i = conn.refreshWaiters.indexOf(waiter);
      if (i >= 0) conn.refreshWaiters.splice(i, 1);
      waiter.reject(err);
    }
    return answer;
  }

  onRefreshed(conn, data) {
    const payload = {
      userId: data?.userId,
      time: data?.time,
      expiresAt: typeof data?.expiresAt === "string" ? data.expiresAt : null,
    };
    if (this.info && payload.userId !== this.info.userId) {
      this.endConnection(conn, reason("protocol", "refreshed names another user"));
      return;
    }
    if (this.info) this.info = { ...this.info, expiresAt: payload.expiresAt };
    this.scheduleRefresh(conn, payload.time, payload.expiresAt);
    this.emit("refreshed", payload);
    conn.refreshWaiters.shift()?.resolve(payload);
  }

  onRefreshFailed(conn, message) {
    this.emit("refreshFailed", { message, expiresAt: this.info?.expiresAt ?? null });
    conn.refreshWaiters.shift()?.reject(new SealwireError("refresh-failed", message));
  }

  deliver(conn, frame, encrypted, raw) {
    if (frame.event === "error") {
      const message = typeof frame.data?.message === "string" ? frame.data.message : "error";
      conn.lastError = message;
      if (encrypted) conn.sealedError = message;
      // A refused refresh is its own event (as in the Rust SDK), not also a serverError.
      if (message === REFRESH_FAILED) this.onRefreshFailed(conn, message);
      else this.emit("serverError", { message });
      return;
    }
    if (frame.event === "refreshed") {
      this.onRefreshed(conn, frame.data);
      return;
    }
    if (this.options.recover && frame.event === "recovered") {
      const streams = Array.isArray(frame.data?.streams) ? frame.data.streams : [];
      // An unheld position (epoch "") is kept too, where no other is held: sent back on the
      // next reconnect, it is answered `recovered: false`, so a stream the server could not
      // track is never taken for one that missed nothing.
      for (const s of streams) this.advance(s?.stream, s?.offset, s?.epoch);
      this.emit("recovered", { streams });
      return;
    }
    // A second `connected`, a `recovered` this client did not ask for: no application data.
    if (PROTOCOL_OUTBOUND.has(frame.event)) return;
    const message = { event: frame.event, data: frame.data ?? null, encrypted };
    if (this.options.recover && typeof frame.stream === "string") {
      this.advance(frame.stream, frame.offset, frame.epoch);
      message.position = { stream: frame.stream, offset: frame.offset, epoch: frame.epoch };
    }
    if (this.options.captureRawFrames && typeof raw === "string") message.raw = raw;
    this.emit("message", message);
  }

  endConnection(conn, why, closeCode = 1000) {
    if (conn.closed) return;
    conn.closed = true;
    conn.ready = false;
    conn.token = null;
    conn.roomKeys = null;
    for (const t of conn.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    clearTimeout(conn.refreshTimer);
    const gone = new SealwireError("disconnected", `connection ended: ${why.kind}`, why);
    for (const w of conn.refreshWaiters.splice(0)) w.reject(gone);
    if (closeCode !== null && conn.ws && conn.ws.readyState <= 1) {
      try {
        conn.ws.close(closeCode);
      } catch {
        // Already closing.
      }
    }
    if (this.conn === conn) {
      this.conn = null;
      this.info = null;
    }
    if (this.stopped || !why.retryable) {
      this.stop(this.stopped ? reason("client-closed") : why);
      return;
    }
    if (conn.establishedAt !== undefined && Date.now() - conn.establishedAt >= this.options.reconnect.minUptime) {
      this.attempt = 0;
    }
    this.attempt += 1;
    const delay = backoffDelay(this.options.reconnect, this.attempt);
    if (delay === null) {
      this.stop(why);
      return;
    }
    this.emit("disconnected", { reason: why, retryIn: delay });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  stop(why) {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const err = new SealwireError("disconnected", `stopped: ${why.kind}: ${why.message}`, why);
    for (const item of this.queue) item.reject(err);
    this.queue = [];
    this.emit("disconnected", { reason: why, retryIn: null });
    this.firstConnect?.reject(err);
    // A rejection nobody awaits is not an error of the application's.
    this.firstConnect?.promise.catch(() => {});
  }
}

/** The room names of a string or an iterable of strings, or `null` if any is not a non-empty string. */
function roomList(rooms) {
  let list;
  try {
    list = typeof rooms === "string" ? [rooms] : [...rooms];
  } catch {
    return null;
  }
  return list.length > 0 && list.every((r) => typeof r === "string" && r.length > 0) ? list : null;
}
