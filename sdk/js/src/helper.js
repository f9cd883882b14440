// A Socket.IO client helper with the method names of the IGNIS `SocketIOClientHelper`
// (connect, disconnect, authenticate, subscribe/subscribeMany, unsubscribe/unsubscribeMany,
// emit, joinRooms/leaveRooms, getState, shutdown), built on SealwireClient over the Socket.IO
// transport: the connection is hardened (`sealwire-v2`), the token travels sealed, every event
// both ways is a sealed record. For services, relays and tests; Node or browser.
//
// What differs from the IGNIS helper: authentication is part of the hardened handshake, so
// `connect()` authenticates (`authenticate()` only waits for it), `onConnected` and
// `onAuthenticated` both fire once the sealed `connected` arrived, and the token comes from
// `token` (a string or a provider) instead of `extraHeaders`.

import { SealwireClient } from "./client.js";

const noop = () => {};
/** Disconnect reasons that mean the server refused who we are (IGNIS: `unauthenticated`). */
// Final refusals only: a `handshake` failure is not authenticated (an attacker on the path
// can cause it, with text of its choosing), so it is an error, not an answer of the server's.
const REFUSED = new Set(["auth-failed", "encryption-required"]);

export class SocketIOClientHelper {
  /**
   * @param {object} opts `identifier`, `host` (the server's origin, e.g. `http://localhost:8080`),
   *   `options` (`path`, default `/io`; `transports`; anything else goes to socket.io-client's
   *   `io()`, e.g. `extraHeaders`, `autoConnect: false` to connect later), `token`,
   *   `pinnedServerKeys`, `io` (socket.io-client's `io`; imported when absent), `client`
   *   (more SealwireClient options), and the callbacks `onConnected`, `onDisconnected`,
   *   `onError`, `onAuthenticated`, `onUnauthenticated`.
   */
  constructor(opts) {
    const { options = {}, host } = opts;
    const { path = "/io", transports, autoConnect = true, ...ioOptions } = options;
    this.identifier = opts.identifier ?? "SocketIOClientHelper";
    this.callbacks = {
      onConnected: opts.onConnected ?? noop,
      onDisconnected: opts.onDisconnected ?? noop,
      onError: opts.onError ?? noop,
      onAuthenticated: opts.onAuthenticated ?? noop,
      onUnauthenticated: opts.onUnauthenticated ?? noop,
    };
    this.state = "unauthorized";
    /** event -> Set of handlers */
    this.handlers = new Map();
    this.client = new SealwireClient({
      ...(opts.client ?? {}),
      url: host,
      transport: "socket.io",
      encryption: "hardened",
      io: opts.io,
      // The helper's own fields first, then what `client` says: pins given either way pin.
      token: opts.token ?? opts.client?.token,
      pinnedServerKeys: opts.pinnedServerKeys ?? opts.client?.pinnedServerKeys ?? [],
      socketIo: { path, transports, ioOptions },
    });
    this.client.on("connected", () => {
      this.state = "authenticated";
      this.callbacks.onConnected();
      this.callbacks.onAuthenticated();
    });
    this.client.on("message", (m) => {
      for (const handler of this.handlers.get(m.event) ?? []) {
        try {
          Promise.resolve(handler(m.data)).catch((e) => this.callbacks.onError(e));
        } catch (e) {
          this.callbacks.onError(e);
        }
      }
    });
    this.client.on("serverError", ({ message }) => this.callbacks.onError(new Error(message)));
    // A refused refresh is a server error to the helper's callbacks, as before.
    this.client.on("refreshFailed", ({ message }) => this.callbacks.onError(new Error(message)));
    this.client.on("disconnected", ({ reason, retryIn }) => {
      this.state = retryIn === null ? "unauthorized" : "authenticating";
      if (retryIn === null && REFUSED.has(reason.kind)) this.callbacks.onUnauthenticated(reason.message);
      this.callbacks.onDisconnected(reason.kind === "client-closed" ? "io client disconnect" : reason.message);
    });
    this.ready = null;
    if (autoConnect) this.connect();
  }

  /** Connects and authenticates (hardened); resolves with the connection info. */
  connect() {
    if (!this.ready) {
      this.state = "authenticating";
      this.ready = this.client.connect();
      this.ready.catch(() => {});
    }
    return this.ready;
  }

  /** Authentication happens inside the hardened handshake: waits for it. */
  authenticate() {
    return this.connect();
  }

  /** `unauthorized`, `authenticating` or `authenticated`. */
  getState() {
    return this.state;
  }

  /** The SealwireClient underneath. */
  getClient() {
    return this.client;
  }

  /** Adds `handler` for `event`; with `ignoreDuplicate` (default) only if it has none yet. */
  subscribe({ event, handler, ignoreDuplicate = true }) {
    const set = this.handlers.get(event) ?? new Set();
    if (ignoreDuplicate && set.size > 0) return;
    set.add(handler);
    this.handlers.set(event, set);
  }

  subscribeMany({ events }) {
    for (const [event, handler] of Object.entries(events)) this.subscribe({ event, handler });
  }

  /** Removes `handler` of `event`, or all of them. */
  unsubscribe({ event, handler }) {
    if (handler) this.handlers.get(event)?.delete(handler);
    else this.handlers.delete(event);
  }

  unsubscribeMany({ events }) {
    for (const event of events) this.unsubscribe({ event });
  }

  /** Sends `topic` with `data`, sealed. Throws when not authenticated or without a topic. */
  emit({ topic, data, cb }) {
    if (!topic) throw new Error(`[${this.identifier}] emit: topic is required`);
    if (this.state !== "authenticated") throw new Error(`[${this.identifier}] emit: not connected`);
    const sent = this.reported(this.client.send(topic, data ?? null));
    if (cb) sent.then(() => setTimeout(cb, 0), () => {});
    return sent;
  }

  /** Asks to join `rooms` (the server's room validator decides). */
  joinRooms({ rooms }) {
    return this.reported(this.client.join(rooms));
  }

  leaveRooms({ rooms }) {
    return this.reported(this.client.leave(rooms));
  }

  /**
   * `promise`, whose failure also goes to `onError`: IGNIS callers do not await these calls,
   * and an unawaited rejection would end a Node process.
   */
  reported(promise) {
    promise.catch((e) => this.callbacks.onError(e));
    return promise;
  }

  /** Disconnects for good. */
  disconnect() {
    this.client.close();
    this.state = "unauthorized";
  }

  /** Removes every handler and disconnects. */
  shutdown() {
    this.handlers.clear();
    this.disconnect();
  }
}
