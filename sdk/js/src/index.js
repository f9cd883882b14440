// sealwire client SDK for browsers and other WebSocket + WebCrypto runtimes.
export { SealwireClient, SealwireError, backoffDelay, refreshDelay, sessionLifetime } from "./client.js";
export {
  ClientHandshake,
  CompatSession,
  HardenedSession,
  CryptoError,
  HARDENED_PROFILE,
  COMPAT_INFO,
} from "./crypto.js";
export {
  RoomKeyring,
  ROOM_KEYS,
  ROOM_KEY_EVENT,
  ROOM_ENCRYPTED_EVENT,
  ROOM_RECORDS_BINARY,
  parseBinaryRoomRecord,
} from "./room.js";
export { fromClose, reason } from "./reason.js";
export { SocketIoSocket, socketIoTarget, FRAME_EVENT, CLOSE_EVENT } from "./socketio.js";
export { SocketIOClientHelper } from "./helper.js";
