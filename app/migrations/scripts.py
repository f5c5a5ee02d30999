"""The migration's writes: each one atomic, each one only if the record is still as read.

The service keeps running while `collectq migrate` does: a script writes a record only
when it still holds what the runner read (the same version, the same bytes); otherwise
it writes nothing and the runner reads the record again. A record's TTL is kept.
Field names and versions come from Python as ARGV (`app.migrations.versions`).
"""

from __future__ import annotations

__all__ = ["HASH_CAS", "HASH_STEP", "STREAM_REBUILD", "STRING_CAS", "ZSET_CAS"]

# A hash record one version up. KEYS[1] the record. ARGV: version field, marker field (a
# complete record has it), the version expected, the new version, the version of a record
# without the field, then field/value pairs it gains where absent. Returns the record's
# version after the call (-1: no record).
HASH_STEP = """
local key, vfield = KEYS[1], ARGV[1]
if redis.call('HEXISTS', key, ARGV[2]) == 0 then return -1 end
local v = tonumber(redis.call('HGET', key, vfield) or ARGV[5])
if v ~= tonumber(ARGV[3]) then return v end
for i = 6, #ARGV, 2 do redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', key, vfield, ARGV[4])
return tonumber(ARGV[4])
"""

# One JSON record of a hash, replaced if unchanged. KEYS[1]. ARGV field, old, new. 1 if done.
HASH_CAS = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# One JSON member of a sorted set, replaced (same score) if still there. KEYS[1]. ARGV old,
# new. 1 if done.
ZSET_CAS = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[2])
return 1
"""

# A JSON string replaced if unchanged, its TTL kept. KEYS[1]. ARGV old, new. 1 if done.
STRING_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""

# A stream's entries cannot change in place: the stream is written again, the same ids in
# the same order, its last id and TTL kept. Entries are only appended and trimmed from the
# head, so the same length, first and last id mean the same entries. KEYS[1] the stream.
# ARGV: length, first id, last id, the entry field, then id/value of every entry. 1 if done.
STREAM_REBUILD = """
local key = KEYS[1]
if redis.call('XLEN', key) ~= tonumber(ARGV[1]) then return 0 end
local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
if not first or first[1] ~= ARGV[2] or last[1] ~= ARGV[3] then return 0 end
local info = redis.call('XINFO', 'STREAM', key)
local last_id = ARGV[3]
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last_id = info[i + 1] end
end
local ttl = redis.call('PTTL', key)
redis.call('DEL', key)
for i = 5, #ARGV, 2 do redis.call('XADD', key, ARGV[i], ARGV[4], ARGV[i + 1]) end
redis.call('XSETID', key, last_id)
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return 1
"""
