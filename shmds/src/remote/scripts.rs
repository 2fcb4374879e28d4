//! The Lua scripts every remote operation runs: each one is atomic on the
//! server, so a bounded structure keeps its bound exactly and a handle
//! never acts on an entry that was erased meanwhile.
//!
//! Conventions: an entry script gets `KEYS[1]` = the segment's meta hash,
//! `ARGV[1]` = the entry name and `ARGV[2]` = the record the handle opened;
//! it first fails with `SHMDS_STALE` if the record changed. Signal lists
//! (`s:` items arrived, `r:` room or a release) hold at most 64 tokens,
//! one per element moved, so waiters blocked in `BLPOP` wake up.

use redis::Script;
use std::sync::LazyLock;

/// The check every entry script starts with.
macro_rules! entry_script {
    ($body:expr) => {
        LazyLock::new(|| {
            Script::new(concat!(
                "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then ",
                "return redis.error_reply('SHMDS_STALE entry erased') end\n",
                "local function signal(key, n)\n",
                "  local room = 64 - redis.call('LLEN', key)\n",
                "  for _ = 1, math.min(n, room) do redis.call('RPUSH', key, '1') end\n",
                "end\n",
                "local function now_ms()\n",
                "  local t = redis.call('TIME')\n",
                "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
                "end\n",
                "local function add_le(a, d)\n",
                "  if #a ~= #d then return nil end\n",
                "  local out, carry = {}, 0\n",
                "  for i = 1, #a do\n",
                "    local s = string.byte(a, i) + string.byte(d, i) + carry\n",
                "    out[i] = string.char(s % 256)\n",
                "    carry = math.floor(s / 256)\n",
                "  end\n",
                "  return table.concat(out)\n",
                "end\n",
                $body
            ))
        })
    };
}

/// KEYS: seg hash. ARGV: format. Returns the segment's format.
pub(super) static SEGMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HSETNX', KEYS[1], 'format', ARGV[1])
         return redis.call('HGET', KEYS[1], 'format')",
    )
});

/// KEYS: meta, gen. ARGV: entry, kind, capacity, element type, key type,
/// bytes to zero (arrays), key prefix. Returns {created (0/1), record}.
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local cur = redis.call('HGET', KEYS[1], ARGV[1])
         if cur then return {0, cur} end
         local gen = redis.call('INCR', KEYS[2])
         local record = '1|' .. ARGV[2] .. '|' .. gen .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[5]
         redis.call('HSET', KEYS[1], ARGV[1], record)
         if ARGV[2] == 'channel' then
           redis.call('XGROUP', 'CREATE', ARGV[7] .. ':d:' .. gen .. ':' .. ARGV[1], 'shmds', '0', 'MKSTREAM')
         end
         local bytes = tonumber(ARGV[6])
         if bytes > 0 then
           redis.call('SETRANGE', ARGV[7] .. ':d:' .. gen .. ':' .. ARGV[1], bytes - 1, '\\0')
         end
         return {1, record}",
    )
});

/// KEYS: meta. ARGV: entry, key prefix. Deletes the record and every key
/// of its generation. Returns 1, or 0 if there was no such entry.
pub(super) static ERASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local rec = redis.call('HGET', KEYS[1], ARGV[1])
         if not rec then return 0 end
         redis.call('HDEL', KEYS[1], ARGV[1])
         local gen = string.match(rec, '^1|[^|]*|(%d+)|')
         if gen then
           local base = ARGV[2] .. ':'
           local tail = gen .. ':' .. ARGV[1]
           local consumers = base .. 'c:' .. tail
           for _, c in ipairs(redis.call('HKEYS', consumers)) do
             redis.call('DEL', base .. 'p:' .. tail .. ':' .. c)
           end
           redis.call('DEL', base .. 'd:' .. tail, base .. 's:' .. tail, base .. 'r:' .. tail,
                      base .. 'i:' .. tail, consumers, base .. 'h:' .. tail)
         end
         return 1",
    )
});

// ---- queue and stack: a list, pushed on the right ----

/// KEYS: meta, data, items signal, in-flight count. ARGV: entry, record,
/// capacity, values... Pushes the prefix that fits; returns how many.
pub(super) static PUSH: LazyLock<Script> = entry_script!(
    "local cap = tonumber(ARGV[3])
     local used = redis.call('LLEN', KEYS[2]) + tonumber(redis.call('GET', KEYS[4]) or '0')
     local n = math.min(#ARGV - 3, cap - used)
     if n <= 0 then return 0 end
     redis.call('RPUSH', KEYS[2], unpack(ARGV, 4, 3 + n))
     signal(KEYS[3], n)
     return n"
);

/// KEYS: meta, data, room signal. ARGV: entry, record, count, side (L
/// for a queue, R for a stack). Returns the elements taken (first first).
pub(super) static POP: LazyLock<Script> = entry_script!(
    "local got
     if ARGV[4] == 'L' then got = redis.call('LPOP', KEYS[2], ARGV[3])
     else got = redis.call('RPOP', KEYS[2], ARGV[3]) end
     if not got then return {} end
     signal(KEYS[3], #got)
     return got"
);

/// The part of TAKE and RECOVER that returns the pending elements of
/// consumers whose lease ran out (KEYS[2] data, KEYS[4] in-flight count,
/// KEYS[5] consumers; ARGV[3] side, ARGV[4] this consumer, ARGV[6] the
/// pending key prefix), to the front of a queue or the top of a stack, in
/// their order.
macro_rules! recover_part {
    () => {
        "local now = now_ms()
         local recovered = 0
         local all = redis.call('HGETALL', KEYS[5])
         for i = 1, #all, 2 do
           local c, deadline = all[i], tonumber(all[i + 1])
           if c ~= ARGV[4] and (deadline == nil or deadline < now) then
             local pending = ARGV[6] .. c
             local from = 'RIGHT'
             local to = 'LEFT'
             if ARGV[3] == 'R' then to = 'RIGHT' end
             while redis.call('LMOVE', pending, KEYS[2], from, to) do
               recovered = recovered + 1
             end
             redis.call('HDEL', KEYS[5], c)
           end
         end
         if recovered > 0 then
           redis.call('DECRBY', KEYS[4], recovered)
           signal(KEYS[3], recovered)
         end
        "
    };
}

/// KEYS: meta, data, items signal, in-flight count, consumers, this
/// consumer's pending list. ARGV: entry, record, side, consumer, lease ms,
/// pending key prefix. Returns {recovered, element?}: the element (if
/// any) moved to the pending list, the lease renewed.
pub(super) static TAKE: LazyLock<Script> = entry_script!(concat!(
    recover_part!(),
    "local side = 'LEFT'
     if ARGV[3] == 'R' then side = 'RIGHT' end
     local v = redis.call('LMOVE', KEYS[2], KEYS[6], side, 'RIGHT')
     if not v then return {recovered} end
     redis.call('INCR', KEYS[4])
     redis.call('HSET', KEYS[5], ARGV[4], now + tonumber(ARGV[5]))
     return {recovered, v}"
));

/// KEYS and ARGV as TAKE. Returns how many elements went back.
pub(super) static RECOVER: LazyLock<Script> =
    entry_script!(concat!(recover_part!(), "return recovered"));

/// KEYS: meta, pending list, in-flight count, room signal, consumers.
/// ARGV: entry, record, element, consumer, lease ms. Returns 1 if the
/// element was still pending (now removed), 0 if it went back.
pub(super) static ACK: LazyLock<Script> = entry_script!(
    "local n = redis.call('LREM', KEYS[2], 1, ARGV[3])
     if n == 1 then
       redis.call('DECR', KEYS[3])
       signal(KEYS[4], 1)
     end
     if redis.call('LLEN', KEYS[2]) == 0 then redis.call('HDEL', KEYS[5], ARGV[4])
     elseif n == 1 then redis.call('HSET', KEYS[5], ARGV[4], now_ms() + tonumber(ARGV[5])) end
     return n"
);

/// KEYS: meta, data, in-flight count. Returns {waiting, in flight}.
pub(super) static LEN: LazyLock<Script> = entry_script!(
    "return {redis.call('LLEN', KEYS[2]), tonumber(redis.call('GET', KEYS[3]) or '0')}"
);

// ---- map: a hash of key bytes to value bytes ----

/// KEYS: meta, hash. ARGV: entry, record, capacity, key, value. Returns
/// the previous value or nil; SHMDS_FULL if a new key finds no room.
pub(super) static MAP_INSERT: LazyLock<Script> = entry_script!(
    "local old = redis.call('HGET', KEYS[2], ARGV[4])
     if not old and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
       return redis.error_reply('SHMDS_FULL')
     end
     redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
     return old"
);

/// As MAP_INSERT, but an existing value stays. Returns the value now held.
pub(super) static MAP_GET_OR_INSERT: LazyLock<Script> = entry_script!(
    "local old = redis.call('HGET', KEYS[2], ARGV[4])
     if old then return old end
     if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
       return redis.error_reply('SHMDS_FULL')
     end
     redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
     return ARGV[5]"
);

/// KEYS: meta, hash. ARGV: entry, record, key. Returns the value or nil.
pub(super) static MAP_GET: LazyLock<Script> =
    entry_script!("return redis.call('HGET', KEYS[2], ARGV[3])");

/// KEYS: meta, hash. ARGV: entry, record, key. Removes it; returns the
/// value it had, or nil.
pub(super) static MAP_REMOVE: LazyLock<Script> = entry_script!(
    "local old = redis.call('HGET', KEYS[2], ARGV[3])
     if old then redis.call('HDEL', KEYS[2], ARGV[3]) end
     return old"
);

/// KEYS: meta, hash. Returns the number of keys.
pub(super) static MAP_LEN: LazyLock<Script> = entry_script!("return redis.call('HLEN', KEYS[2])");

/// KEYS: meta, hash. Removes every key.
pub(super) static MAP_CLEAR: LazyLock<Script> =
    entry_script!("redis.call('DEL', KEYS[2]) return 1");

/// KEYS: meta, hash. Returns every key and value, alternating.
pub(super) static MAP_ALL: LazyLock<Script> =
    entry_script!("return redis.call('HGETALL', KEYS[2])");

/// KEYS: meta, hash. ARGV: entry, record, capacity, key, delta, zero.
/// Adds `delta` (little-endian, wrapping) to the value, an absent one
/// counting as zero; returns the previous value.
pub(super) static MAP_FETCH_ADD: LazyLock<Script> = entry_script!(
    "local old = redis.call('HGET', KEYS[2], ARGV[4])
     if not old then
       if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
         return redis.error_reply('SHMDS_FULL')
       end
       old = ARGV[6]
     end
     local new = add_le(old, ARGV[5])
     if not new then return redis.error_reply('SHMDS_CORRUPT a value of another size') end
     redis.call('HSET', KEYS[2], ARGV[4], new)
     return old"
);

/// KEYS: meta, hash. ARGV: entry, record, key, current, new. Returns {0}
/// if the key is absent, {1, old} if it held `current` (now `new`), {2,
/// actual} if it held another value.
pub(super) static MAP_COMPARE_EXCHANGE: LazyLock<Script> = entry_script!(
    "local old = redis.call('HGET', KEYS[2], ARGV[3])
     if not old then return {0} end
     if old == ARGV[4] then
       redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
       return {1, old}
     end
     return {2, old}"
);

// ---- array: one string of len × size bytes ----

/// KEYS: meta, data. ARGV: entry, record, offset, length. Returns the bytes.
pub(super) static ARRAY_READ: LazyLock<Script> = entry_script!(
    "return redis.call('GETRANGE', KEYS[2], ARGV[3], tonumber(ARGV[3]) + tonumber(ARGV[4]) - 1)"
);

/// KEYS: meta, data. ARGV: entry, record, offset, bytes.
pub(super) static ARRAY_WRITE: LazyLock<Script> =
    entry_script!("redis.call('SETRANGE', KEYS[2], ARGV[3], ARGV[4]) return 1");

/// KEYS: meta, data. ARGV: entry, record, offset, delta. Adds `delta`
/// (little-endian, wrapping); returns the previous bytes.
pub(super) static ARRAY_FETCH_ADD: LazyLock<Script> = entry_script!(
    "local off = tonumber(ARGV[3])
     local old = redis.call('GETRANGE', KEYS[2], off, off + #ARGV[4] - 1)
     local new = add_le(old, ARGV[4])
     if not new then return redis.error_reply('SHMDS_CORRUPT the array is shorter than its record says') end
     redis.call('SETRANGE', KEYS[2], off, new)
     return old"
);

/// KEYS: meta, data. ARGV: entry, record, offset, current, new. Returns
/// {1, old} if the element held `current` (now `new`), {0, actual} if not.
pub(super) static ARRAY_COMPARE_EXCHANGE: LazyLock<Script> = entry_script!(
    "local off = tonumber(ARGV[3])
     local old = redis.call('GETRANGE', KEYS[2], off, off + #ARGV[4] - 1)
     if old == ARGV[4] then
       redis.call('SETRANGE', KEYS[2], off, ARGV[5])
       return {1, old}
     end
     return {0, old}"
);

// ---- lock: a token with an expiry, and a marker of the holder ----

/// KEYS: meta, lock, holder marker. ARGV: entry, record, token, lease ms.
/// Returns {1, previous marker} when taken (a non-empty marker: its holder
/// let the lease run out without unlocking), else {0, holder, ms left}.
pub(super) static LOCK_ACQUIRE: LazyLock<Script> = entry_script!(
    "if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
       local prev = redis.call('GET', KEYS[3])
       redis.call('SET', KEYS[3], ARGV[3])
       return {1, prev or ''}
     end
     return {0, redis.call('GET', KEYS[2]) or '', redis.call('PTTL', KEYS[2])}"
);

/// KEYS: meta, lock, holder marker, release signal. ARGV: entry, record,
/// token. Returns 1 if released, 0 if another holder took it over.
pub(super) static LOCK_RELEASE: LazyLock<Script> = entry_script!(
    "local held = redis.call('GET', KEYS[2])
     if held == ARGV[3] or (not held and redis.call('GET', KEYS[3]) == ARGV[3]) then
       redis.call('DEL', KEYS[2], KEYS[3])
       signal(KEYS[4], 1)
       return 1
     end
     return 0"
);

/// KEYS: meta, lock. ARGV: entry, record, token, lease ms. Returns 1 if
/// renewed, 0 if it is not held with `token` any more.
pub(super) static LOCK_EXTEND: LazyLock<Script> = entry_script!(
    "if redis.call('GET', KEYS[2]) == ARGV[3] then
       redis.call('PEXPIRE', KEYS[2], ARGV[4])
       return 1
     end
     return 0"
);

/// KEYS: meta, lock. Returns {holder token or '', ms left}.
pub(super) static LOCK_STATE: LazyLock<Script> =
    entry_script!("return {redis.call('GET', KEYS[2]) or '', redis.call('PTTL', KEYS[2])}");

// ---- channel: a stream read through the consumer group `shmds` ----

/// KEYS: meta, stream, held count, items signal. ARGV: entry, record,
/// capacity, message. Returns 1 if sent, 0 if the channel holds `capacity`
/// messages.
pub(super) static CHANNEL_SEND: LazyLock<Script> = entry_script!(
    "if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[3]) then return 0 end
     redis.call('XADD', KEYS[2], '*', 'm', ARGV[4])
     redis.call('INCR', KEYS[3])
     signal(KEYS[4], 1)
     return 1"
);

/// KEYS: meta, stream, held count, room signal. ARGV: entry, record,
/// consumer, ack now (1: at most once) or lease ms for redelivery (0: no
/// reclaiming). Returns {} or {id, message}; a message taken at most once
/// is gone from the stream.
pub(super) static CHANNEL_RECV: LazyLock<Script> = entry_script!(
    "local id, msg
     if ARGV[4] ~= '1' and tonumber(ARGV[4]) > 0 then
       local claimed = redis.call('XAUTOCLAIM', KEYS[2], 'shmds', ARGV[3], ARGV[4], '0-0', 'COUNT', 1)
       local e = claimed[2][1]
       if e then id, msg = e[1], e[2][2] end
     end
     if not id then
       local got = redis.call('XREADGROUP', 'GROUP', 'shmds', ARGV[3], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
       if not got then return {} end
       local e = got[1][2][1]
       if not e then return {} end
       id, msg = e[1], e[2][2]
     end
     if ARGV[4] == '1' then
       redis.call('XACK', KEYS[2], 'shmds', id)
       redis.call('XDEL', KEYS[2], id)
       redis.call('DECR', KEYS[3])
       signal(KEYS[4], 1)
     end
     return {id, msg}"
);

/// KEYS: meta, stream, held count, room signal. ARGV: entry, record, id.
/// Returns 1 if acknowledged now, 0 if someone already had.
pub(super) static CHANNEL_ACK: LazyLock<Script> = entry_script!(
    "if redis.call('XACK', KEYS[2], 'shmds', ARGV[3]) == 0 then return 0 end
     redis.call('XDEL', KEYS[2], ARGV[3])
     redis.call('DECR', KEYS[3])
     signal(KEYS[4], 1)
     return 1"
);

/// KEYS: meta, held count. Returns the messages held (sent, not acknowledged).
pub(super) static CHANNEL_LEN: LazyLock<Script> =
    entry_script!("return tonumber(redis.call('GET', KEYS[2]) or '0')");

// ---- topic: a stream trimmed to its capacity, read by cursors ----

/// KEYS: meta, stream, sequence counter. ARGV: entry, record, capacity,
/// message. Returns the message's sequence number (from 0).
pub(super) static TOPIC_PUBLISH: LazyLock<Script> = entry_script!(
    "local seq = redis.call('INCR', KEYS[3]) - 1
     redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 's', seq, 'm', ARGV[4])
     return seq"
);

/// KEYS: meta, stream, sequence counter. ARGV: entry, record, cursor
/// (a stream id; '-' for the oldest). Returns {} or {id, seq, message},
/// the first entry after the cursor.
pub(super) static TOPIC_READ: LazyLock<Script> = entry_script!(
    "local from = '-'
     if ARGV[3] ~= '-' then from = '(' .. ARGV[3] end
     local got = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 1)
     local e = got[1]
     if not e then return {} end
     return {e[1], e[2][2], e[2][4]}"
);

/// KEYS: meta, stream, sequence counter. Returns {last id or '0-0', next seq}.
pub(super) static TOPIC_TAIL: LazyLock<Script> = entry_script!(
    "local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
     local id = '0-0'
     if last then id = last[1] end
     return {id, tonumber(redis.call('GET', KEYS[3]) or '0')}"
);
