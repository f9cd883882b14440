// Byte helpers shared by the SDK: base64 (standard alphabet, padded), UTF-8, big-endian
// integers and concatenation. Browser-safe: no Buffer, no Node built-ins.

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of a string. */
export const utf8 = (s) => textEncoder.encode(s);

/** The string of UTF-8 bytes; throws on invalid UTF-8. */
export const fromUtf8 = (u8) => textDecoder.decode(u8);

/** `fromUtf8` of a decrypted plaintext, whose bytes are then overwritten with zeros (the
 * string itself cannot be wiped: JavaScript strings are immutable). */
export function takeUtf8(u8) {
  try {
    return textDecoder.decode(u8);
  } finally {
    u8.fill(0);
  }
}

const exactDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** `fromUtf8` that keeps a leading byte-order mark (U+FEFF) as a character of the string, for
 * names that must round-trip byte for byte (a room name is any string). */
export const fromUtf8Exact = (u8) => exactDecoder.decode(u8);

/** Standard base64 (with padding) of bytes. */
export function toBase64(u8) {
  let bin = "";
  for (let i = 0; i < u8.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** Bytes of standard base64; throws `TypeError` on anything else. */
export function fromBase64(s) {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new TypeError("not standard base64");
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** base64url without padding (JWK coordinates). */
export const toBase64Url = (u8) =>
  toBase64(u8).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** Concatenation of byte arrays. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** `n` as `bytes` big-endian bytes (n a non-negative integer below 2^53). */
export function bigEndian(n, bytes) {
  const out = new Uint8Array(bytes);
  let v = BigInt(n);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** `u16(len(x)) || x`. */
export function lengthPrefixed(u8) {
  // The prefix is 16 bits: a longer field cannot be encoded (and must not be cut short).
  if (u8.length > 0xffff) throw new RangeError(`a length-prefixed field holds at most 65535 bytes, not ${u8.length}`);
  return concat(bigEndian(u8.length, 2), u8);
}

/** Constant-time equality of two byte arrays (length is not secret). */
export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
