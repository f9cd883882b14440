// Why a connection ended, as the application sees it. Mirrors the Rust SDK's
// `DisconnectReason` and the close codes of docs/PROTOCOL.md section 7.

/**
 * @typedef {object} DisconnectReason
 * @property {string} kind `auth-timeout` (4001), `heartbeat-timeout` (4002), `auth-failed`
 *   (4003), `encryption-required` (4004), `slow-consumer` (4005), `session-expired` (4006:
 *   the session reached its `expiresAt` without a refresh; the reconnect asks the token
 *   provider for a fresh token), `server-shutdown` (1001),
 *   `closed` (any other close code), `network` (no close frame or the connect timeout),
 *   `token` (the token provider failed), `handshake` (the server's handshake reply did not
 *   check out, was a downgrade, or a 4004 came before it: retried, since anyone on the path
 *   can cause it; the token was not sent), `protocol` (the server broke the protocol inside
 *   the record layer, or in a compat/plaintext session), `crypto` (a record did not open),
 *   `config` (the settings or the runtime cannot work, e.g. socket.io-client is missing),
 *   `client-closed` (`close()` was called). On a hardened connection a 4003 is final only
 *   when a sealed `error` announced it; without one it is `closed`, retried.
 * @property {number|null} code the close code, when the server sent one
 * @property {string} message human-readable detail
 * @property {boolean} retryable whether reconnecting (with the same settings and a token from
 *   the same provider) can help
 */

const byCode = {
  4001: "auth-timeout",
  4002: "heartbeat-timeout",
  4003: "auth-failed",
  4004: "encryption-required",
  4005: "slow-consumer",
  4006: "session-expired",
  1001: "server-shutdown",
};

/** Kinds that reconnecting with the same token and settings cannot fix. */
const FINAL = new Set(["auth-failed", "encryption-required", "protocol", "config", "client-closed"]);

/** A reason of `kind`. */
export function reason(kind, message = kind, code = null) {
  return { kind, code, message, retryable: !FINAL.has(kind) };
}

/** Close codes the server announces with an `error` first (docs/PROTOCOL.md section 7). */
const EXPLAINED = new Set([4003, 4004]);

/**
 * Maps a WebSocket close. 1006 (closed without a close frame) is a network failure;
 * `lastError` is the server's last `error` message, which explains a 4003/4004 (and only
 * those: an earlier `Invalid rooms` or `Refresh failed` says nothing about a later close).
 */
export function fromClose(code, closeReason, lastError) {
  if (code === 1006) return reason("network", closeReason || "connection lost");
  const kind = byCode[code] ?? "closed";
  const explained = EXPLAINED.has(code) && lastError ? lastError : null;
  return reason(kind, explained ?? (closeReason || kind), code);
}
