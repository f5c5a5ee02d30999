"""Live events of jobs: Redis streams written by the store's Lua, read by the API's streams.

Every state change of a collector (queued, running, retrying, succeeded, failed,
cancelled, skipped) and a job's final status is one entry, written in the same Lua
script as the change itself (`app.jobs.lua`: ``emit``), so an event exists exactly when
the change does. One entry goes to three streams with ONE id (the id of the all-jobs
stream, reused for the other two, which hold a subset in the same order):

    p ev:{job}       the job's events (exact MAXLEN; expires with the job hash)
    p evo:{owner}    an owner's events (approximate MAXLEN; expires like its newest job)
    p ev-all         every event (approximate MAXLEN): the API's hub reads only this one

So an SSE ``id:`` is the same whichever stream a client reads, and ``Last-Event-ID``
resumes exactly. Key names: `app.rediskeys` (`events`, `owner_events_prefix`,
`all_events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.status import TERMINAL_JOB

__all__ = [
    "ALL_MAXLEN",
    "EMIT",
    "EMIT_SCRIPT",
    "JOB_MAXLEN",
    "OWNER_MAXLEN",
    "Event",
    "parse_entry",
    "stream_id_key",
]

JOB_MAXLEN = 1000  # a job's own stream, exact: (collectors × attempts × states) stays far below
OWNER_MAXLEN = 10_000  # per owner, approximate: how far back a resumed /v1/events can reach
ALL_MAXLEN = 50_000  # the hub's stream, approximate: minutes of headroom at high load

# The Lua `emit` function, shared by the store's scripts (rendered into each).
# evjob, evall: keys; evo: the owner-stream prefix; kind: state | done.
# redis.pcall for the subset streams: a refused XADD (an id not above a stream's last,
# only possible if the all-jobs stream was deleted by hand) must never undo a state change.
EMIT = f"""
local function emit(key, evjob, evall, evo, kind, collector, status, attempt, at)
  local id, owner = unpack(redis.call('HMGET', key, 'id', 'owner'))
  local f = {{'kind', kind, 'job', id, 'owner', owner, 'collector', collector,
             'status', status, 'attempt', attempt, 'at', at}}
  local eid = redis.call('XADD', evall, 'MAXLEN', '~', {ALL_MAXLEN}, '*', unpack(f))
  redis.pcall('XADD', evo .. owner, 'MAXLEN', '~', {OWNER_MAXLEN}, eid, unpack(f))
  redis.pcall('XADD', evjob, 'MAXLEN', {JOB_MAXLEN}, eid, unpack(f))
  local ttl = redis.call('TTL', key)
  if ttl > 0 then
    redis.call('EXPIRE', evjob, ttl)
    -- extend, never shorten (EXPIRE … GT needs Redis 7; up's embedded Redis is 6.2)
    if redis.call('TTL', evo .. owner) < ttl then redis.call('EXPIRE', evo .. owner, ttl) end
  end
  return eid
end
"""

# For a change made outside Lua (create: the queued events, in the create transaction).
# KEYS job, job stream, all stream. ARGV owner-stream prefix, kind, collector, status,
# attempt, at.
EMIT_SCRIPT = (
    EMIT
    + """
return emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"""
)


@dataclass(frozen=True)
class Event:
    """One stream entry. `kind` is ``state`` (a collector) or ``done`` (the job's final)."""

    id: str
    kind: str
    job_id: str
    owner: str
    collector: str
    status: str
    attempt: int
    at: str

    @property
    def final(self) -> bool:
        return self.kind == "done" and self.status in TERMINAL_JOB

    def data(self) -> dict[str, Any]:
        """What a client sees (never the owner)."""
        if self.kind == "done":
            return {"job_id": self.job_id, "status": self.status, "at": self.at}
        return {
            "job_id": self.job_id,
            "collector": self.collector,
            "status": self.status,
            "attempt": self.attempt,
            "at": self.at,
        }


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    """An Event of an XRANGE/XREAD entry (bytes or str)."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    return Event(
        id=_text(entry_id),
        kind=f.get("kind", "state"),
        job_id=f.get("job", ""),
        owner=f.get("owner", ""),
        collector=f.get("collector", ""),
        status=f.get("status", ""),
        attempt=int(f.get("attempt") or 0),
        at=f.get("at", ""),
    )


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (``ms-seq``); malformed ids sort first."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return -1, -1
