//! History in Redis Streams: the key layout, the two scripts, and reading their replies.
//! Used by the history store ([`super::history`]) and the emitter; imports no server.
//!
//! Per stream `S` (`room:..`, `user:..`, `broadcast`):
//! - `sealwire:history:m:S`, a hash: `epoch` (random, set when the stream is created) and
//!   `top` (the last offset, `HINCRBY`);
//! - `sealwire:history:s:S`, a Redis stream: one entry per kept publication, id `<offset>-1`,
//!   fields `e` (the bus envelope as published, sealed under the bus key when there is one)
//!   and `t` (Redis's clock, in milliseconds, at the append).
//!
//! The append script allocates the offset, appends (`XADD .. MAXLEN ~ size`), drops the oldest
//! entries past the age bound, refreshes both keys' TTL and `PUBLISH`es the envelope with
//! `"offset"` and `"epoch"` added, all in one atomic step: every subscriber receives a
//! stream's publications in offset order. A stream whose hash is gone (expired, evicted, a
//! Redis restart without persistence) starts again in a new epoch, its old entries deleted.

use redis::Value;

use crate::protocol::{BusEnvelope, Position};

/// Prefix of every history key.
pub(crate) const KEY_PREFIX: &str = "sealwire:history:";

/// The hash of `stream`.
#[must_use]
pub(crate) fn meta_key(stream: &str) -> String {
    format!("{KEY_PREFIX}m:{stream}")
}

/// The Redis stream of `stream`.
#[must_use]
pub(crate) fn entries_key(stream: &str) -> String {
    format!("{KEY_PREFIX}s:{stream}")
}

/// Shared head of both scripts: Redis's clock in ms, and the stream's epoch (a new one, with
/// its old entries dropped, when the hash is gone or `reset` is asked for).
const HEAD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function epoch_of(fresh, reset)
  local epoch = redis.call('HGET', KEYS[1], 'epoch')
  if reset or not epoch then
    epoch = fresh
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  end
  return epoch
end
";

/// KEYS: hash, entries. ARGV: channel, envelope JSON (an object), size, ttl ms, a fresh epoch,
/// `1` to start a new epoch. Returns `{offset, epoch, subscribers that received it}`.
const APPEND_BODY: &str = r#"
local epoch = epoch_of(ARGV[5], ARGV[6] == '1')
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-1', 'e', ARGV[2], 't', now)
local cutoff = now - tonumber(ARGV[4])
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 8)) do
  if tonumber(entry[2][4]) >= cutoff then break end
  redis.call('XDEL', KEYS[2], entry[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local kept = string.sub(ARGV[2], 1, -2) .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}'
local listening = redis.call('PUBLISH', ARGV[1], kept)
return {offset, epoch, listening}
"#;

/// KEYS: hash, entries. ARGV: since, limit, ttl ms, a fresh epoch, `1` to create the stream
/// if it is not held, `1` for a recovery, and the epoch `since` is in (a recovery's; an
/// unheld position's is empty, and matches no stream). Returns
/// `{epoch, top, now, entries, created}` (entries as `XRANGE` gives them, after offset
/// `since`); for a stream not held and not created, `{"", 0, now, {}, 0}`, and nothing is
/// written. A recovery whose epoch is not the stream's, or that is more than `limit` behind,
/// is a gap: no entry is read for it. A read extends the life of a stream only once something was
/// appended to it, so a stream made for a lookup expires a TTL after it was made.
const READ_BODY: &str = r"
local created = 0
if not redis.call('HGET', KEYS[1], 'epoch') then
  if ARGV[5] ~= '1' then
    return {'', 0, now, {}, 0}
  end
  created = 1
end
local epoch = epoch_of(ARGV[4], false)
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
if created == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif top > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local entries = {}
local since = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local gap = ARGV[6] == '1' and (ARGV[7] ~= epoch or top - since > limit)
if limit > 0 and since < top and not gap then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {epoch, top, now, entries, created}
";

/// KEYS: hash, entries. ARGV: a fresh epoch. Starts a new epoch for a stream Redis holds
/// (its entries dropped, its TTL kept); a stream it does not hold starts one anyway at its
/// next append or read. Returns 1.
const RESTART: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'top', 0)
  redis.call('DEL', KEYS[2])
end
return 1
";

/// The restart script.
#[must_use]
pub(crate) fn restart_script() -> redis::Script {
    redis::Script::new(RESTART)
}

/// Starts a new epoch for `stream` (see [`restart_script`]).
///
/// # Errors
/// The script failed.
pub(crate) async fn restart<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    script: &redis::Script,
    stream: &str,
) -> redis::RedisResult<()> {
    script
        .key(meta_key(stream))
        .key(entries_key(stream))
        .arg(fresh_epoch())
        .invoke_async::<i64>(conn)
        .await
        .map(drop)
}

/// The append script.
#[must_use]
pub(crate) fn append_script() -> redis::Script {
    redis::Script::new(&format!("{HEAD}{APPEND_BODY}"))
}

/// The read script.
#[must_use]
pub(crate) fn read_script() -> redis::Script {
    redis::Script::new(&format!("{HEAD}{READ_BODY}"))
}

/// A fresh random epoch: 16 hex digits.
#[must_use]
pub(crate) fn fresh_epoch() -> String {
    let bytes: [u8; 8] = rand::RngExt::random(&mut rand::rng());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the append script for `envelope` (already sealed when the bus is) on `stream`:
/// where it was kept, and how many subscribers (instances) received it.
///
/// # Errors
/// The script failed or Redis answered something else than `{offset, epoch, subscribers}`.
pub(crate) async fn append<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    script: &redis::Script,
    stream: &str,
    envelope: &BusEnvelope,
    (size, ttl_ms): (usize, u64),
    reset: bool,
) -> redis::RedisResult<(Position, usize)> {
    let (offset, epoch, listening): (u64, String, usize) = script
        .key(meta_key(stream))
        .key(entries_key(stream))
        .arg(envelope.target.channel())
        .arg(envelope.to_json())
        .arg(size.max(1))
        .arg(ttl_ms.max(1))
        .arg(fresh_epoch())
        .arg(if reset { "1" } else { "0" })
        .invoke_async(conn)
        .await?;
    Ok((Position { offset, epoch }, listening))
}

/// A stream's state and entries as the read script returned them, not yet opened.
#[derive(Debug)]
pub(crate) struct RawPage {
    /// Where the stream stands.
    pub position: Position,
    /// Redis's clock at the read, in milliseconds.
    pub now_ms: u64,
    /// Entries after the offset asked for: offset, append time (Redis's clock), envelope text.
    pub entries: Vec<(u64, u64, String)>,
    /// Whether this read created the stream.
    pub created: bool,
}

/// Runs the read script: where `stream` stands and up to `limit` entries after `since`;
/// with `create`, a stream not held is created in a new epoch.
///
/// # Errors
/// The script failed or its answer has another shape.
pub(crate) async fn read<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    script: &redis::Script,
    stream: &str,
    (since, epoch, limit): (u64, Option<&str>, usize),
    (ttl_ms, create): (u64, bool),
) -> redis::RedisResult<RawPage> {
    let value: Value = script
        .key(meta_key(stream))
        .key(entries_key(stream))
        .arg(since)
        .arg(limit)
        .arg(ttl_ms.max(1))
        .arg(fresh_epoch())
        .arg(if create { "1" } else { "0" })
        .arg(if epoch.is_some() { "1" } else { "0" })
        .arg(epoch.unwrap_or(""))
        .invoke_async(conn)
        .await?;
    parse_page(value).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected answer from the history read script",
        ))
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

fn parse_page(value: Value) -> Option<RawPage> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [epoch, top, now, entries, created] = parts.as_slice() else {
        return None;
    };
    let Value::Array(raw) = entries else {
        return None;
    };
    let mut out = Vec::with_capacity(raw.len());
    for entry in raw {
        let Value::Array(pair) = entry else {
            return None;
        };
        let [id, Value::Array(fields)] = pair.as_slice() else {
            return None;
        };
        let offset = text(id)?.split_once('-')?.0.parse().ok()?;
        let (mut envelope, mut at) = (None, 0);
        for kv in fields.chunks(2) {
            match (kv.first().and_then(text).as_deref(), kv.get(1)) {
                (Some("e"), Some(v)) => envelope = text(v),
                (Some("t"), Some(v)) => at = int(v).unwrap_or(0),
                _ => {}
            }
        }
        out.push((offset, at, envelope?));
    }
    Some(RawPage {
        position: Position {
            offset: int(top)?,
            epoch: text(epoch)?,
        },
        now_ms: int(now)?,
        entries: out,
        created: int(created)? == 1,
    })
}
