// The sealwire client for browsers (and any runtime with WebSocket and WebCrypto): connect,
// authenticate, handshake, then events in, events out, with reconnects.
//
// One connection at a time. Everything the client does on a connection runs through two
// promise chains, one outbound and one inbound, so records are sealed and opened strictly in
// order although WebCrypto is asynchronous.

import { ClientHandshake, CryptoError, defaultSubtle } from "./crypto.js";
import { fromClose, reason } from "./reason.js";

const MAX_EVENT_CHARS = 256;
/** Event names the application may not send itself (protocol events). */
const RESERVED = new Set([
  "authenticate",
  "connected",
  "encrypted",
  "join",
  "leave",
  "heartbeat",
  "disconnect",
]);

/** A failure of a client call: `kind` is `config`, `invalid-event`, `queue-full`, `closed` or `disconnected`. */
export class SealwireError extends Error {
  constructor(kind, message, reason) {
    super(message);
    this.name = "SealwireError";
    this.kind = kind;
    /** For `disconnected`: the reason the client stopped. */
    this.reason = reason;
  }
}

const DEFAULTS = {
  encryption: "hardened",
  pinnedServerKeys: [],
  heartbeatInterval: 25_000,
  connectTimeout: 10_000,
  sendQueue: 1024,
  captureRawFrames: false,
  reconnect: {
    enabled: true,
    initialDelay: 250,
    maxDelay: 30_000,
    multiplier: 2,
    jitter: 0.5,
    maxAttempts: Infinity,
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
 * A sealwire client.
 *
 * ```js
 * const client = new SealwireClient({ url: "wss://rt.example.com/ws", token });
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
    if (!options || typeof options.url !== "string" || !/^wss?:\/\//.test(options.url)) {
      throw new SealwireError("config", "url must be a ws:// or wss:// URL");
    }
    this.options = {
      ...DEFAULTS,
      ...options,
      reconnect: { ...DEFAULTS.reconnect, ...(options.reconnect ?? {}) },
    };
    const { encryption } = this.options;
    if (!["off", "compat", "hardened"].includes(encryption)) {
      throw new SealwireError("config", `encryption must be off, compat or hardened, not ${encryption}`);
    }
    this.WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new SealwireError("config", "no WebSocket implementation (pass options.WebSocket)");
    }
    this.subtle = encryption === "off" ? null : (this.options.subtle ?? defaultSubtle());
    this.listeners = new Map();
    this.rooms = new Set();
    this.queue = [];
    this.conn = null;
    this.info = null;
    this.attempt = 0;
    this.everConnected = false;
    this.stopped = false;
    this.started = false;
    this.retryTimer = null;
    this.firstConnect = null;
  }

  /**
   * Subscribes to `connected`, `message`, `serverError`, `decryptFailed`,
   * `plaintextRejected` or `disconnected`. Returns the unsubscribe function.
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
   * session established); retryable failures are retried under the reconnect policy
   * meanwhile. Rejects with `SealwireError("disconnected")` if the client stops first.
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

  /** The current connection's `{id, userId, profile, encrypted}`, or `null` between connections. */
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
   * the client is reconnecting. Resolves once the frame is handed to the socket.
   */
  send(event, data = null) {
    if (typeof event !== "string" || event.length === 0 || [...event].length > MAX_EVENT_CHARS || RESERVED.has(event)) {
      return Promise.reject(new SealwireError("invalid-event", `invalid event name ${JSON.stringify(event)}`));
    }
    return this.enqueue(JSON.stringify({ event, data }));
  }

  /** Asks to join `rooms` (the server's room validator decides); remembered for reconnects. */
  join(rooms) {
    const list = roomList(rooms);
    if (!list) return Promise.reject(new SealwireError("config", "room names must be non-empty strings"));
    for (const r of list) this.rooms.add(r);
    return this.enqueue(JSON.stringify({ event: "join", data: { rooms: list } }));
  }

  /** Leaves `rooms`. */
  leave(rooms) {
    const list = roomList(rooms);
    if (!list) return Promise.reject(new SealwireError("config", "room names must be non-empty strings"));
    for (const r of list) this.rooms.delete(r);
    return this.enqueue(JSON.stringify({ event: "leave", data: { rooms: list } }));
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

  async open() {
    if (this.stopped) return;
    const encryption = this.options.encryption;
    let handshake = null;
    const conn = {
      ws: null,
      ready: false,
      closed: false,
      session: null,
      lastError: null,
      sendChain: Promise.resolve(),
      recvChain: Promise.resolve(),
      timers: [],
      outbound: async (envelope) => (conn.session ? conn.session.sealFrame(envelope) : envelope),
    };
    this.conn = conn;
    try {
      if (encryption !== "off") {
        handshake = await ClientHandshake.create({
          profile: encryption,
          pinnedServerKeys: this.options.pinnedServerKeys,
          subtle: this.subtle,
          info: this.options.info,
        });
      }
      if (conn.closed) return;
      conn.ws = new this.WebSocket(this.options.url);
    } catch (err) {
      const kind = err instanceof CryptoError ? "handshake" : "network";
      this.endConnection(conn, reason(kind, String(err?.message ?? err)));
      return;
    }
    const ws = conn.ws;
    conn.timers.push(
      setTimeout(() => {
        if (!conn.ready) this.endConnection(conn, reason("network", "connect timeout"));
      }, this.options.connectTimeout),
    );
    ws.onopen = () => {
      const data = { token: this.options.token ?? "" };
      if (handshake) {
        data.publicKey = handshake.publicKeyBase64;
        if (handshake.profileId) data.profile = handshake.profileId;
      }
      ws.send(JSON.stringify({ event: "authenticate", data }));
    };
    ws.onmessage = (msg) => {
      conn.recvChain = conn.recvChain.then(() => this.receive(conn, handshake, msg.data));
    };
    ws.onclose = (ev) => {
      // Frames that arrived before the close are handled first.
      conn.recvChain.then(() =>
        this.endConnection(conn, fromClose(ev.code, ev.reason, conn.lastError), null),
      );
    };
    ws.onerror = () => {
      // A close event follows; nothing to do here.
    };
  }

  async receive(conn, handshake, raw) {
    if (conn.closed) return;
    if (typeof raw !== "string") {
      this.endConnection(conn, reason("protocol", "binary frame from the server"));
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
    if (!conn.ready) {
      await this.beforeConnected(conn, handshake, frame);
      return;
    }
    if (frame.event === "encrypted" && conn.session) {
      let inner;
      try {
        inner = JSON.parse(await conn.session.open(frame.data));
      } catch {
        inner = null;
      }
      if (typeof inner !== "object" || inner === null || typeof inner.event !== "string") {
        if (conn.session.profile === "compat") {
          this.emit("decryptFailed", { frameLength: raw.length });
        } else {
          // A hardened receive sequence cannot skip a record: start over with a new handshake.
          this.emit("decryptFailed", { frameLength: raw.length });
          this.endConnection(conn, reason("crypto", "a record did not open"));
        }
        return;
      }
      this.deliver(conn, inner, true, raw);
      return;
    }
    if (conn.session) {
      // Plaintext on an encrypted session: refused, never delivered (it could be injected).
      this.emit("plaintextRejected", { event: frame.event });
      return;
    }
    this.deliver(conn, frame, false, raw);
  }

  deliver(conn, frame, encrypted, raw) {
    if (frame.event === "error") {
      const message = typeof frame.data?.message === "string" ? frame.data.message : "error";
      conn.lastError = message;
      this.emit("serverError", { message });
      return;
    }
    const message = { event: frame.event, data: frame.data ?? null, encrypted };
    if (this.options.captureRawFrames) message.raw = raw;
    this.emit("message", message);
  }

  async beforeConnected(conn, handshake, frame) {
    if (frame.event === "error") {
      conn.lastError = typeof frame.data?.message === "string" ? frame.data.message : "error";
      this.emit("serverError", { message: conn.lastError });
      return;
    }
    if (frame.event !== "connected") {
      this.endConnection(conn, reason("protocol", `expected connected, got ${frame.event}`));
      return;
    }
    const data = frame.data ?? {};
    let confirmation = null;
    if (handshake) {
      try {
        const done = await handshake.finish(data);
        conn.session = done.session;
        confirmation = done.confirmation;
      } catch (err) {
        const kind = err instanceof CryptoError ? "handshake" : "protocol";
        this.endConnection(conn, reason(kind, `${err?.kind ?? "error"}: ${err?.message ?? err}`));
        return;
      }
    }
    if (conn.closed) return;
    conn.ready = true;
    this.attempt = 0;
    // The hardened confirmation must be the first record; re-joins come next, then the queue.
    if (confirmation) conn.ws.send(confirmation);
    if (this.rooms.size > 0) {
      this.transmit(conn, JSON.stringify({ event: "join", data: { rooms: [...this.rooms] } })).catch(() => {});
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
    };
    this.emit("connected", { ...this.info, reconnected });
    this.firstConnect?.resolve(this.info);
  }

  endConnection(conn, why, closeCode = 1000) {
    if (conn.closed) return;
    conn.closed = true;
    conn.ready = false;
    for (const t of conn.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
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
