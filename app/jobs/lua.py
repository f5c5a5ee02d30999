"""The job store's Lua scripts: every state move of a job is one atomic script.

The scripts share their vocabulary with Python: status values, the terminal sets
and the final-status rule come from `schemas.status`, the watch-member separator
and key prefixes from `app.rediskeys`; they are rendered into the script text once,
when the module is imported (a pure string substitution), and key prefixes travel
as ARGV. tests/integration/test_lua_rules.py runs the rule in Redis against
`final_job_status` on every combination of collector states.

Keys: KEYS[1] is the job hash, KEYS[2] (where used) the watch sorted set of
unfinished collectors (member ``{job}|{collector}``, score = the time by which
the reaper expects news of it). A collector's state only moves forward, so a
redelivered task can neither record twice nor move a finished collector back,
and the job's final state is decided once, by whichever collector ends last.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from string import Template

from app.jobs.events import EMIT
from app.rediskeys import WATCH_SEPARATOR
from schemas.status import TERMINAL_COLLECTOR, TERMINAL_JOB, CollectorStatus, JobStatus

__all__ = ["BEGIN", "CLOSE", "FINALIZER_FIELDS", "PUT_ARTIFACT", "REAP_CLAIM", "RECORD", "render"]

# The job-hash fields that give a job's end work to do (`app.webhooks.finalize`: the
# callback's deliveries, the schedule's change detection and run bookkeeping). RECORD
# puts a job in the finished outbox only if it has one of them.
FINALIZER_FIELDS = ("callback_url", "schedule_id")


def _lua_str(value: str) -> str:
    return json.dumps(str(value))  # a JSON string of ASCII is a valid Lua string literal


def _lua_set(values: Iterable[str]) -> str:
    return "{" + ", ".join(f"[{_lua_str(v)}]=true" for v in sorted(values)) + "}"


_VOCABULARY = {
    "CTERMINAL": _lua_set(TERMINAL_COLLECTOR),
    "JTERMINAL": _lua_set(TERMINAL_JOB),
    "C_SUCCEEDED": _lua_str(CollectorStatus.SUCCEEDED),
    "C_CANCELLED": _lua_str(CollectorStatus.CANCELLED),
    "C_RUNNING": _lua_str(CollectorStatus.RUNNING),
    "J_QUEUED": _lua_str(JobStatus.QUEUED),
    "J_RUNNING": _lua_str(JobStatus.RUNNING),
    "J_SUCCEEDED": _lua_str(JobStatus.SUCCEEDED),
    "J_PARTIAL": _lua_str(JobStatus.PARTIAL),
    "J_FAILED": _lua_str(JobStatus.FAILED),
    "J_CANCELLED": _lua_str(JobStatus.CANCELLED),
    "SEP": _lua_str(WATCH_SEPARATOR),
    "FINALIZER_FIELDS": "{" + ", ".join(_lua_str(f) for f in FINALIZER_FIELDS) + "}",
}


def render(source: str) -> str:
    """`source` with ``$NAME`` replaced by the Lua form of that Python value."""
    return Template(source).substitute(_VOCABULARY)


# Shared by every script: the terminal sets.
_SETS = """
local cterminal = $CTERMINAL
local jterminal = $JTERMINAL
"""

# The final-status rule (schemas.status.final_job_status), for a job whose
# collectors may all be done: nil while one is unfinished.
_FINALIZE = """
local function finalize(key, now, ttl)
  local names = cjson.decode(redis.call('HGET', key, 'collectors'))
  local ok, cancelled = 0, 0
  for _, name in ipairs(names) do
    local s = redis.call('HGET', key, 's:' .. name)
    if not cterminal[s] then return nil end
    if s == $C_SUCCEEDED then ok = ok + 1 end
    if s == $C_CANCELLED then cancelled = cancelled + 1 end
  end
  local final = $J_PARTIAL
  if ok == #names then final = $J_SUCCEEDED
  elseif cancelled == #names then final = $J_CANCELLED
  elseif ok == 0 then final = $J_FAILED end
  redis.call('HSET', key, 'status', final, 'finished_at', now)
  redis.call('EXPIRE', key, ttl)
  return final
end
"""

# A job that leaves `queued` leaves its owner's queued set (the per-owner quota).
# `queued_prefix`: app.rediskeys.RedisKeys.queued_prefix.
_DEQUEUE = """
local function dequeue(key, queued_prefix)
  local owner, id = unpack(redis.call('HMGET', key, 'owner', 'id'))
  redis.call('ZREM', queued_prefix .. owner, id)
end
"""

# KEYS job, watch, finished outbox. ARGV: collector, status, attempt, result JSON, now, ttl,
# watch score ('' = leave the watch entry as it is; a terminal status always removes it),
# member, queued-set prefix, now (epoch s, the outbox score).
# Live events (app.jobs.events): KEYS[4] the job's stream, KEYS[5] the all-jobs stream,
# ARGV[11] the owner-stream prefix.
# Returns {outcome, job status}; outcome is ok | final | announce | stale | missing
# (final: this made the job final; announce: that too, and its finalizer is due).
RECORD = render(
    _SETS
    + EMIT
    + _FINALIZE
    + _DEQUEUE
    + """
local key, watch = KEYS[1], KEYS[2]
local c, new, res, now = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local attempt, ttl, score, member = tonumber(ARGV[3]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local queued_prefix = ARGV[9]
local cur = redis.call('HGET', key, 's:' .. c)
if not cur then return {'missing', ''} end
local jstatus = redis.call('HGET', key, 'status')
if cterminal[cur] then return {'stale', jstatus} end
if attempt < tonumber(redis.call('HGET', key, 'a:' .. c) or '0') then return {'stale', jstatus} end
redis.call('HSET', key, 's:' .. c, new, 'a:' .. c, attempt, 'r:' .. c, res)
emit(key, KEYS[4], KEYS[5], ARGV[11], 'state', c, new, attempt, now)  -- live events
if jstatus == $J_QUEUED then
  redis.call('HSET', key, 'status', $J_RUNNING, 'started_at', now)
  dequeue(key, queued_prefix)
  jstatus = $J_RUNNING
end
if cterminal[new] then
  redis.call('HINCRBY', key, 't:' .. c, 1)  -- terminal records: an audit, always 1
  redis.call('ZREM', watch, member)
elseif score ~= '' then
  redis.call('ZADD', watch, score, member)
end
if not cterminal[new] then return {'ok', jstatus} end
local final = finalize(key, now, ttl)
if final then
  emit(key, KEYS[4], KEYS[5], ARGV[11], 'done', '', final, 0, now)  -- live events
  -- the finished outbox (app.jobs.finalize): a job whose end has work to do (a
  -- callback, a schedule) is announced at least once; any other has no finalizer
  for _, field in ipairs($FINALIZER_FIELDS) do
    if redis.call('HEXISTS', key, field) == 1 then
      redis.call('ZADD', KEYS[3], ARGV[10], redis.call('HGET', key, 'id'))
      return {'announce', final}
    end
  end
  return {'final', final}
end
return {'ok', jstatus}
"""
)

# A delivery of a collector's task starts. KEYS job, watch.
# ARGV: collector, now, watch score (heartbeat deadline), max redeliveries, running JSON,
# member, queued-set prefix.
# A start that finds the collector already `running` follows a delivery that
# died without recording anything (worker killed, process crashed): it counts
# as a redelivery, and past the limit the collector is not run again.
# Live events (app.jobs.events): KEYS[3] the job's stream, KEYS[4] the all-jobs stream,
# ARGV[8] the owner-stream prefix. ARGV[9]: the record's TTL while the job runs
# (`JobStore.live_ttl`), set again at each start: a collector that starts late still ends
# with the record there.
# Returns {outcome, attempt}: ok | limit | done | missing; `ok` adds the job's target,
# options JSON and owner (what the run needs: no second round trip to read them).
BEGIN = render(
    _SETS
    + EMIT
    + _DEQUEUE
    + """
local key, watch = KEYS[1], KEYS[2]
local c, now, score, res, member = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local maxr = tonumber(ARGV[4])
local queued_prefix = ARGV[7]
local cur = redis.call('HGET', key, 's:' .. c)
if not cur then return {'missing', 0} end
if cterminal[cur] then return {'done', 0} end
local attempt = tonumber(redis.call('HGET', key, 'a:' .. c) or '0') + 1
if cur == $C_RUNNING then
  local crashes = redis.call('HINCRBY', key, 'x:' .. c, 1)
  if crashes > maxr then return {'limit', attempt} end
end
redis.call('HSET', key, 's:' .. c, $C_RUNNING, 'a:' .. c, attempt, 'r:' .. c, res)
redis.call('EXPIRE', key, tonumber(ARGV[9]))
emit(key, KEYS[3], KEYS[4], ARGV[8], 'state', c, $C_RUNNING, attempt, now)  -- live events
if redis.call('HGET', key, 'status') == $J_QUEUED then
  redis.call('HSET', key, 'status', $J_RUNNING, 'started_at', now)
  dequeue(key, queued_prefix)
end
redis.call('ZADD', watch, score, member)
local target, options, owner = unpack(redis.call('HMGET', key, 'target', 'options', 'owner'))
return {'ok', attempt, target, options, owner}
"""
)

# Close a job that has not finished: every unfinished collector gets `cstatus`
# with `result`, the job gets `jstatus`. KEYS job, watch, finished outbox.
# ARGV: now, ttl, result JSON, cstatus, jstatus, queued-set prefix, now (epoch s).
# Live events (app.jobs.events): KEYS[4] the job's stream, KEYS[5] the all-jobs stream,
# ARGV[8] the owner-stream prefix.
# Returns the job status after ('' if unknown).
CLOSE = render(
    _SETS
    + EMIT
    + _DEQUEUE
    + """
local key, watch = KEYS[1], KEYS[2]
local jstatus = redis.call('HGET', key, 'status')
if not jstatus then return '' end
if jterminal[jstatus] then return jstatus end
dequeue(key, ARGV[6])
local id = redis.call('HGET', key, 'id')
for _, name in ipairs(cjson.decode(redis.call('HGET', key, 'collectors'))) do
  if not cterminal[redis.call('HGET', key, 's:' .. name)] then
    redis.call('HSET', key, 's:' .. name, ARGV[4], 'r:' .. name, ARGV[3])
    redis.call('HINCRBY', key, 't:' .. name, 1)
    local a = redis.call('HGET', key, 'a:' .. name)
    emit(key, KEYS[4], KEYS[5], ARGV[8], 'state', name, ARGV[4], a, ARGV[1])  -- live events
  end
  redis.call('ZREM', watch, id .. $SEP .. name)
end
redis.call('HSET', key, 'status', ARGV[5], 'finished_at', ARGV[1])
redis.call('EXPIRE', key, tonumber(ARGV[2]))
emit(key, KEYS[4], KEYS[5], ARGV[8], 'done', '', ARGV[5], 0, ARGV[1])  -- live events
redis.call('ZADD', KEYS[3], ARGV[7], id)  -- the finished outbox (app.jobs.finalize)
return ARGV[5]
"""
)

# The reaper claims an overdue collector. KEYS job, watch.
# ARGV: member, collector, now (epoch s), next score, max requeues, expected status.
# Returns requeue | fail | skip: `skip` when the collector moved on since it was
# read (a task started or finished it), so a busy collector is never reaped.
REAP_CLAIM = """
local key, watch = KEYS[1], KEYS[2]
local member, c, nxt, seen = ARGV[1], ARGV[2], ARGV[4], ARGV[6]
local now, maxq = tonumber(ARGV[3]), tonumber(ARGV[5])
local score = redis.call('ZSCORE', watch, member)
if not score or tonumber(score) > now then return 'skip' end
if redis.call('HGET', key, 's:' .. c) ~= seen then return 'skip' end
if tonumber(redis.call('HGET', key, 'k:' .. c) or '0') >= maxq then return 'fail' end
redis.call('HINCRBY', key, 'k:' .. c, 1)
redis.call('ZADD', watch, nxt, member)
return 'requeue'
"""

# Store an artifact within its owner's byte budget. KEYS job, art key, owner's ledger
# (zset member → time stored), owner's sizes (hash member → bytes, `_total`).
# ARGV: body, content_type, ttl, member ({job}:{name}), now, budget (0 = none), art prefix
# (prefix .. member is an artifact's key: app.rediskeys.RedisKeys.artifact), the version
# field and the artifact's stored version (app.migrations.versions).
# Entries older than ttl (their keys expired) leave the ledger first; then the
# owner's oldest artifacts are evicted until the new one fits. One artifact larger
# than the whole budget is refused. Returns {stored 1|0, evicted count}.
PUT_ARTIFACT = """
local job, art, ledger, sizes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local body, ctype, ttl, member = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now, budget, artp = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local vfield, version = ARGV[8], ARGV[9]
local size = string.len(body)
if budget > 0 and size > budget then return {0, 0} end
local function forget(m)
  local s = tonumber(redis.call('HGET', sizes, m) or '0')
  redis.call('HDEL', sizes, m)
  redis.call('ZREM', ledger, m)
  redis.call('HINCRBY', sizes, '_total', -s)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', ledger, '-inf', now - ttl)) do forget(m) end
if redis.call('HEXISTS', sizes, member) == 1 then forget(member) end
local evicted = 0
if budget > 0 then
  local total = tonumber(redis.call('HGET', sizes, '_total') or '0')
  while total + size > budget do
    local oldest = redis.call('ZRANGE', ledger, 0, 0)[1]
    if not oldest then break end
    total = total - tonumber(redis.call('HGET', sizes, oldest) or '0')
    forget(oldest)
    redis.call('DEL', artp .. oldest)
    evicted = evicted + 1
  end
end
redis.call('HSET', art, 'body', body, 'content_type', ctype, vfield, version)
redis.call('EXPIRE', art, ttl)
redis.call('ZADD', ledger, now, member)
redis.call('HSET', sizes, member, size)
redis.call('HINCRBY', sizes, '_total', size)
redis.call('EXPIRE', ledger, ttl)
redis.call('EXPIRE', sizes, ttl)
return {1, evicted}
"""
