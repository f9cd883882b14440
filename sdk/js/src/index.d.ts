// Types of the sealwire browser SDK.

/** `off`: plaintext; `compat`: IGNIS-compatible profile; `hardened`: `sealwire-v2` (default). */
export type Encryption = "off" | "compat" | "hardened";

export interface ReconnectPolicy {
  /** Default true. */
  enabled?: boolean;
  /** First delay in ms (default 250). */
  initialDelay?: number;
  /** Largest delay in ms (default 30000). */
  maxDelay?: number;
  /** Growth per attempt (default 2). */
  multiplier?: number;
  /** Fraction of the delay removed at random, 0..1 (default 0.5). */
  jitter?: number;
  /** Consecutive failed attempts before giving up (default Infinity). */
  maxAttempts?: number;
  /**
   * How long in ms a connection must last after `connected` to count as a success (default
   * 5000): one that ends sooner counts as a failed attempt, so backoff and `maxAttempts` apply.
   */
  minUptime?: number;
}

/** `websocket` (default): the server's `/ws`; `socket.io`: its Socket.IO endpoint, hardened only. */
export type Transport = "websocket" | "socket.io";

/** socket.io-client's `io` function (the SDK does not bundle it). */
export type IoFunction = (uri: string, options: Record<string, unknown>) => unknown;

export interface SocketIoOptions {
  /** Socket.IO path; default: the URL's path, else `/io`. */
  path?: string;
  /** socket.io-client transports, e.g. `["websocket"]` (default: socket.io-client's). */
  transports?: string[];
  /** More `io()` options (headers, timeouts); `auth`, `path`, `reconnection` and `forceNew` are the SDK's. */
  ioOptions?: Record<string, unknown>;
}

export interface ClientOptions {
  /**
   * `ws://` or `wss://` URL of the server's WebSocket path; with `transport: "socket.io"`, the
   * server's Socket.IO URL (`https://host/io`, or `ws(s)://`).
   */
  url: string;
  /** Default `websocket`. `socket.io` needs `encryption: "hardened"` (the default). */
  transport?: Transport;
  /** With `transport: "socket.io"`: socket.io-client's `io` (imported from `socket.io-client` when absent). */
  io?: IoFunction;
  /** With `transport: "socket.io"`: where and how to connect. */
  socketIo?: SocketIoOptions;
  /**
   * The credential: a string, or a token provider called (and awaited) on every connection
   * attempt (`purpose: "connect"`) and for every refresh (`purpose: "refresh"`). Hardened: it
   * travels only sealed, after the server's hello checked out.
   */
  token?: string | TokenProvider;
  encryption?: Encryption;
  /** Hardened profile: base64 identity keys the server must sign with (current and next). */
  pinnedServerKeys?: string[];
  /** Compatibility profile: HKDF info (default `ignis-ecdh-p256-aes-256-gcm-v1`). */
  info?: string;
  /** Milliseconds between `heartbeat` events (default 25000). */
  heartbeatInterval?: number;
  /** Milliseconds for one attempt to reach `connected`, every step included (default 10000). */
  connectTimeout?: number;
  /**
   * Refresh sessions that have an `expiresAt` on their own, with a token from the provider
   * (default true; only when `token` is a function).
   */
  autoRefresh?: boolean;
  /** When to refresh, as a fraction of `expiresAt − time` (server clock), 0..1 exclusive (default 0.8). */
  refreshAt?: number;
  /** Messages that may wait while disconnected (default 1024). */
  sendQueue?: number;
  /** The largest message the server takes (default 131072; a sealwire server announces its own in `connected`, which wins): a `send` whose frame could be larger rejects with `too-large`. */
  maxMessageBytes?: number;
  /** Put the frame as received on each message (`raw`). Default false. */
  captureRawFrames?: boolean;
  /**
   * Track the position of every message on a stream with history and recover what was missed
   * on every reconnect (docs/PROTOCOL.md section 12): the server replays it before live
   * delivery, then `recovered` says per stream whether the gap was filled. Default false.
   */
  recover?: boolean;
  /**
   * Hardened profile: ask for room keys (`sealwire-room-v1`, docs/PROTOCOL.md section 14), so a
   * server that uses them seals each publication to a keyed room once for all its members
   * instead of once per member. Grants and room records are handled inside the client: the
   * application sees the same `message` events (`encrypted: true`), never a key. A room record
   * that does not open ends the connection, as a sealed record that does not open does.
   * `false`: nothing is asked for, and every message arrives in the client's own records.
   * Ignored by the other profiles. Default true.
   */
  roomKeys?: boolean;
  /**
   * With room keys over the WebSocket transport: ask for room records as binary messages
   * (docs/PROTOCOL.md section 14.6), a third smaller than their text form. A server that does
   * not agree sends text records, which the client takes either way. Default true.
   */
  binaryRoomRecords?: boolean;
  reconnect?: ReconnectPolicy;
  /** WebSocket constructor (default `globalThis.WebSocket`). */
  WebSocket?: typeof WebSocket;
  /** WebCrypto (default `globalThis.crypto.subtle`). */
  subtle?: SubtleCrypto;
}

/** Returns the token to send; `purpose` says whether for a new connection or a refresh. */
export type TokenProvider = (context: { purpose: "connect" | "refresh" }) => string | Promise<string>;

export interface ConnectionInfo {
  id: string;
  userId: string;
  profile: "off" | "compat" | "sealwire-v2";
  encrypted: boolean;
  /** When the server ends the session (4006) unless it is refreshed; null without a lifetime. */
  expiresAt: string | null;
}

/** The server's `refreshed` payload. */
export interface RefreshResult {
  userId: string;
  time: string;
  /** The new expiry; null when the new token gives the session no lifetime. */
  expiresAt: string | null;
}

export type DisconnectKind =
  | "auth-timeout"
  | "heartbeat-timeout"
  | "auth-failed"
  | "encryption-required"
  | "slow-consumer"
  | "session-expired"
  | "server-shutdown"
  | "closed"
  | "network"
  | "token"
  | "handshake"
  | "protocol"
  | "crypto"
  | "config"
  | "client-closed";

export interface DisconnectReason {
  kind: DisconnectKind;
  /** The close code, when the server sent one (4001..4006, 1001, ...). */
  code: number | null;
  message: string;
  /** False for `auth-failed`, `encryption-required`, `protocol`, `config`, `client-closed` (a `handshake` failure is retried). */
  retryable: boolean;
}

export interface Message {
  event: string;
  data: unknown;
  /** Whether it arrived inside an `encrypted` record or a `room-encrypted` room record. */
  encrypted: boolean;
  /** The frame as received, with `captureRawFrames` (text frames only: a binary room record
   * has none). */
  raw?: string;
  /** Its place in a stream with history, with `recover`. */
  position?: { stream: string; offset: number; epoch: string };
}

/** Where a stream stands after a recovery. */
export interface StreamState {
  stream: string;
  epoch: string;
  offset: number;
  /** For a stream a position was sent for: whether every missed message was replayed
   * (false: refetch from the application's own store). */
  recovered?: boolean;
  /** Messages replayed (absent when none). */
  replayed?: number;
}

export interface ClientEvents {
  connected: ConnectionInfo & { reconnected: boolean };
  message: Message;
  /** With `recover`, after connecting and after each join: the missed messages have been
   * delivered, and each stream's state. */
  recovered: { streams: StreamState[] };
  serverError: { message: string };
  /**
   * An `encrypted` frame that did not open, or a room key or room record that failed a check
   * (also: one on a connection that did not agree to room keys); hardened sessions then
   * reconnect.
   */
  decryptFailed: { frameLength: number };
  /** A plaintext application frame on an encrypted session: refused, not delivered. */
  plaintextRejected: { event: string };
  /** The server accepted a refresh: the session now ends at `expiresAt` (null: never). */
  refreshed: RefreshResult;
  /** A refresh was refused (`Refresh failed`) or the token provider failed; the session keeps
   * `expiresAt` and closes with 4006 then unless a later refresh succeeds. */
  refreshFailed: { message: string; expiresAt: string | null };
  /** `retryIn` is the delay before the next attempt in ms, or null when the client stopped. */
  disconnected: { reason: DisconnectReason; retryIn: number | null };
}

export class SealwireError extends Error {
  kind: "config" | "invalid-event" | "queue-full" | "too-large" | "closed" | "disconnected" | "token" | "refresh-failed";
  reason?: DisconnectReason;
}

export class SealwireClient {
  constructor(options: ClientOptions);
  on<K extends keyof ClientEvents>(type: K, listener: (payload: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(type: K, listener: (payload: ClientEvents[K]) => void): void;
  connect(): Promise<ConnectionInfo>;
  readonly connection: ConnectionInfo | null;
  joinedRooms(): string[];
  /** With `recover`: the last position received in each stream, as sent on the next reconnect. */
  positions(): Record<string, { offset: number; epoch: string }>;
  send(event: string, data?: unknown): Promise<void>;
  /** Between connections resolves at once: every connection starts by joining the rooms joined and not left. */
  join(rooms: string | Iterable<string>): Promise<void>;
  leave(rooms: string | Iterable<string>): Promise<void>;
  /** Refreshes the session now with a token from the provider. */
  refresh(): Promise<RefreshResult>;
  close(): void;
}

export function backoffDelay(policy: Required<ReconnectPolicy>, attempt: number, random?: () => number): number | null;
/** `expiresAt − time` in ms (both server-clock ISO strings), or null without a lifetime. */
export function sessionLifetime(time: string, expiresAt: string | null | undefined): number | null;
/** `ratio` (default 0.8) of `sessionLifetime`, or null. */
export function refreshDelay(time: string, expiresAt: string | null | undefined, ratio?: number): number | null;

export class CryptoError extends Error {
  kind: "invalid-public-key" | "encoding" | "handshake" | "untrusted-server" | "decrypt" | "exhausted";
}

export interface Session {
  readonly profile: "compat" | "sealwire-v2";
  sealFrame(plaintext: string): Promise<string>;
  open(data: unknown): Promise<string>;
}
export class CompatSession implements Session {
  readonly profile: "compat";
  sealFrame(plaintext: string): Promise<string>;
  open(data: unknown): Promise<string>;
}
export class HardenedSession implements Session {
  readonly profile: "sealwire-v2";
  sealFrame(plaintext: string): Promise<string>;
  open(data: unknown): Promise<string>;
}

export class ClientHandshake {
  static create(options?: {
    profile?: "compat" | "hardened";
    pinnedServerKeys?: string[];
    info?: string;
    subtle?: SubtleCrypto;
  }): Promise<ClientHandshake>;
  static fromKeyPair(privateKey: Uint8Array, publicKey: Uint8Array, options?: object): Promise<ClientHandshake>;
  readonly publicKeyBase64: string;
  readonly profileId: "sealwire-v2" | undefined;
  /** Hardened: the client `hello` payload (no credential). */
  helloData(): { profile: "sealwire-v2"; publicKey: string };
  /** Hardened: `{"event":"hello","data":helloData()}` as JSON text. */
  helloFrame(): string;
  /**
   * Hardened: checks the server's `hello` (profile, rekeyAfter, pins, signature, key
   * confirmation) and derives the session. Send `confirmation` first, then the sealed
   * `authenticate`; the sealed `connected` must carry `id`.
   */
  finishHello(hello: object): Promise<{ session: HardenedSession; confirmation: string; id: string }>;
  /** Compatibility profile: derives the session from the plaintext `connected`. */
  finish(connected: object): Promise<{ session: CompatSession; confirmation: null }>;
}

export const HARDENED_PROFILE: "sealwire-v2";
export const COMPAT_INFO: string;

/** Wire id of the room-key extension (`roomKeys` in the sealed `authenticate` and `connected`). */
export const ROOM_KEYS: "sealwire-room-v1";
/** The sealed grant of a room epoch's secret (never delivered to the application). */
export const ROOM_KEY_EVENT: "room-key";
/** A publication sealed once under a room epoch's key, outside the per-client record layer. */
export const ROOM_ENCRYPTED_EVENT: "room-encrypted";

/** The `roomRecords` value that agrees to binary room records (section 14.6). */
export const ROOM_RECORDS_BINARY: "binary";

/** The `data` of a `room-encrypted` frame, or a parsed binary room record. */
export interface RoomRecord {
  room: string;
  epoch: number;
  seq: number;
  /** Ciphertext ‖ tag: base64 (a text frame's `data`) or bytes (a binary record). */
  ct: string | Uint8Array;
}

/** The fields of a binary room record (section 14.6), or `null` for anything that is not one. */
export function parseBinaryRoomRecord(bytes: Uint8Array): (RoomRecord & { ct: Uint8Array }) | null;

/**
 * A member's room keys (`sealwire-room-v1`, docs/PROTOCOL.md section 14): per room, the latest
 * epoch granted (as a non-extractable key, never exposed) and the last `seq` accepted in it.
 * `SealwireClient` keeps one per connection; failures are `CryptoError`s (`encoding` for a
 * malformed grant, `decrypt` otherwise).
 */
export class RoomKeyring {
  constructor(options?: { subtle?: SubtleCrypto });
  /** Takes a grant; refuses an epoch not above the one held and a key that is not 32 bytes. */
  grant(room: string, epoch: number, key: string): Promise<void>;
  /** Forgets a room's key. */
  forget(room: string): void;
  /** The epoch held for `room`. */
  epoch(room: string): number | undefined;
  /**
   * Opens a room record: the epoch held, `seq` above the last accepted one (gaps allowed), a
   * tag that verifies and an application event (not a system event) inside; else nothing
   * changes and it rejects.
   */
  open(data: RoomRecord): Promise<{ event: string; data?: unknown; [field: string]: unknown }>;
}
export function reason(kind: DisconnectKind, message?: string, code?: number | null): DisconnectReason;
export function fromClose(code: number, reason: string, lastError: string | null): DisconnectReason;

/** The Socket.IO event carrying one `/ws` frame, both directions (`sealwire`). */
export const FRAME_EVENT: "sealwire";
/** The Socket.IO event carrying the close code before the server's disconnect (`sealwire:close`). */
export const CLOSE_EVENT: "sealwire:close";
/** Splits a server URL into socket.io-client's `uri` and `path`. */
export function socketIoTarget(url: string, path?: string): { uri: string; path: string };

/** A Socket.IO connection shaped like a WebSocket (what `transport: "socket.io"` uses). */
export class SocketIoSocket {
  constructor(io: IoFunction, url: string, options?: SocketIoOptions);
  readonly readyState: 0 | 1 | 2 | 3;
  onopen: ((ev: { type: "open" }) => void) | null;
  onmessage: ((ev: { type: "message"; data: string }) => void) | null;
  onclose: ((ev: { type: "close"; code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((ev: { type: "error"; error: unknown }) => void) | null;
  send(text: string): void;
  close(code?: number, reason?: string): void;
}

export interface SocketIOClientHelperOptions {
  identifier?: string;
  /** The server's origin, e.g. `http://localhost:8080`. */
  host: string;
  /** `path` (default `/io`), `transports`, `autoConnect` (default true); the rest goes to `io()`. */
  options?: { path?: string; transports?: string[]; autoConnect?: boolean; [key: string]: unknown };
  io?: IoFunction;
  token?: string | TokenProvider;
  pinnedServerKeys?: string[];
  /** More SealwireClient options (reconnect, recover, ...). */
  client?: Partial<ClientOptions>;
  onConnected?: () => void;
  onDisconnected?: (reason: string) => void;
  onError?: (error: unknown) => void;
  onAuthenticated?: () => void;
  onUnauthenticated?: (message: string) => void;
}

/** The IGNIS `SocketIOClientHelper` method names over the hardened Socket.IO transport. */
export class SocketIOClientHelper {
  constructor(options: SocketIOClientHelperOptions);
  connect(): Promise<ConnectionInfo>;
  authenticate(): Promise<ConnectionInfo>;
  getState(): "unauthorized" | "authenticating" | "authenticated";
  getClient(): SealwireClient;
  subscribe(opts: { event: string; handler: (data: unknown) => unknown; ignoreDuplicate?: boolean }): void;
  subscribeMany(opts: { events: Record<string, (data: unknown) => unknown> }): void;
  unsubscribe(opts: { event: string; handler?: (data: unknown) => unknown }): void;
  unsubscribeMany(opts: { events: string[] }): void;
  emit(opts: { topic: string; data?: unknown; doLog?: boolean; cb?: () => void }): Promise<void>;
  joinRooms(opts: { rooms: string[] }): Promise<void>;
  leaveRooms(opts: { rooms: string[] }): Promise<void>;
  disconnect(): void;
  shutdown(): void;
}
