"""The job store's create script: a new job's record, indexes, watch entries and `queued`
events in one atomic call (one round trip, no SCRIPT EXISTS a pipeline of scripts costs).

KEYS: job hash, job event stream, all-jobs event stream, watch set, the owner's index, the
admin index, the owner's queued set. ARGV[1]: JSON (`JobStore.create` builds it): `fields`
of the hash (strings), `id`, `ttl`, `floor` (index entries below it are older than the
TTL), `watch` (members), `due` (their score), `queued_at`, `collectors`, `evo` (the
owner-stream prefix), `at` (the events' time), `queued` (the collector status).
"""

from __future__ import annotations

from app.jobs.events import EMIT

__all__ = ["CREATE"]

CREATE = (
    EMIT
    + """
local a = cjson.decode(ARGV[1])
local flat = {}
for k, v in pairs(a.fields) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('EXPIRE', KEYS[1], a.ttl)
for i = 5, 6 do
  redis.call('ZADD', KEYS[i], 0, a.id)
  redis.call('ZREMRANGEBYLEX', KEYS[i], '-', '(' .. a.floor)
end
for _, member in ipairs(a.watch) do
  redis.call('ZADD', KEYS[4], a.due, member)
end
redis.call('ZADD', KEYS[7], a.queued_at, a.id)
for _, name in ipairs(a.collectors) do
  emit(KEYS[1], KEYS[2], KEYS[3], a.evo, 'state', name, a.queued, 0, a.at)
end
return 1
"""
)
