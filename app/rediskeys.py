"""Every Redis key collectq writes, named in one place.

All keys live under the configured prefix ``p`` (``COLLECTQ_REDIS_PREFIX``), so
several deployments can share one Redis. The Lua scripts get their key names
from here too (as KEYS, or as a prefix in ARGV), never as literals of their own.
What each key holds and how long it lives: docs/architecture.md, "State in Redis".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["WATCH_SEPARATOR", "RedisKeys", "split_watch_member", "watch_member"]

# A watch member is ``{job id}|{collector}``: neither a job id nor a collector name has a `|`.
WATCH_SEPARATOR = "|"


def watch_member(job_id: str, collector: str) -> str:
    """The watch-set member of one collector of one job."""
    return f"{job_id}{WATCH_SEPARATOR}{collector}"


def split_watch_member(member: str) -> tuple[str, str]:
    """(job id, collector) of a watch-set member."""
    job_id, _, collector = member.partition(WATCH_SEPARATOR)
    return job_id, collector


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix."""

    prefix: str = "cq:"

    # jobs -------------------------------------------------------------------
    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def index(self, owner: str) -> str:
        """An owner's job ids."""
        return f"{self.prefix}idx:{owner}"

    @property
    def all_jobs(self) -> str:
        """Every job id, for admins: not ``idx:{…}``, so no owner name can reach it."""
        return f"{self.prefix}idx-all"

    @property
    def legacy_all_jobs(self) -> str:
        """The admin index before it had a name of its own (``idx:*``): adopted, then gone."""
        return f"{self.prefix}idx:*"

    def idempotency(self, owner: str, key: str) -> str:
        return f"{self.prefix}idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def reuse(self, owner: str, identity: str) -> str:
        """The newest jobs of `owner` with one identity hash (`app.jobs.reuse`), a list."""
        return f"{self.prefix}reuse:{owner}:{identity}"

    @property
    def watch(self) -> str:
        """Unfinished collectors, scored by when the reaper expects news of them."""
        return f"{self.prefix}watch"

    @property
    def queued_prefix(self) -> str:
        return f"{self.prefix}queued:"

    def queued(self, owner: str) -> str:
        """An owner's jobs still queued (the per-owner quota)."""
        return f"{self.queued_prefix}{owner}"

    @property
    def finished(self) -> str:
        """The finished outbox: ids of jobs that became final, scored by when
        (`app.jobs.finalize`); an entry leaves when the finalizer (`jobs.finished`) ran."""
        return f"{self.prefix}finished"

    # webhooks ---------------------------------------------------------------
    def webhook_secret(self, owner: str) -> str:
        """An owner's signing secret(s): current, previous and until when it still signs."""
        return f"{self.prefix}whsec:{owner}"

    def webhook_endpoint(self, owner: str) -> str:
        """An owner's account-level webhook (`key.expiring`): url, events."""
        return f"{self.prefix}whep:{owner}"

    def deliveries(self, job_id: str) -> str:
        """A job's webhook deliveries: delivery id → JSON record with its attempts."""
        return f"{self.prefix}dlv:{job_id}"

    # schedules --------------------------------------------------------------
    def schedule(self, schedule_id: str) -> str:
        """A schedule's record (hash: owner, paused, the JSON of its definition)."""
        return f"{self.prefix}sch:{schedule_id}"

    def schedule_index(self, owner: str) -> str:
        """An owner's schedule ids (zset, lexical order = creation order)."""
        return f"{self.prefix}schidx:{owner}"

    @property
    def all_schedules(self) -> str:
        """Every schedule id, for admins and the `collectq_schedules` gauge."""
        return f"{self.prefix}schidx-all"

    @property
    def paused_schedules(self) -> str:
        return f"{self.prefix}sch-paused"

    def schedule_runs(self, schedule_id: str) -> str:
        """A schedule's runs: JSON members scored by fire time (bounded: count and age)."""
        return f"{self.prefix}schruns:{schedule_id}"

    def schedule_running(self, schedule_id: str) -> str:
        """Job ids of a schedule's runs not known to be final yet (max_concurrent)."""
        return f"{self.prefix}schrun:{schedule_id}"

    def schedule_tick(self, schedule_id: str, due_ms: int) -> str:
        """Set once per tick (SET NX): a tick is fired at most once, whoever sends it."""
        return f"{self.prefix}schtick:{schedule_id}:{due_ms}"

    def schedule_queued(self, schedule_id: str) -> str:
        """The one tick waiting for a free slot (policy `queue`)."""
        return f"{self.prefix}schq:{schedule_id}"

    @property
    def redbeat_prefix(self) -> str:
        """celery-redbeat's keys: entries ``rb:{schedule id}``, ``rb::schedule``, the lock."""
        return f"{self.prefix}rb:"

    @property
    def beat_lock(self) -> str:
        """The active beat's lock (redbeat): one beat fires, the others wait."""
        return f"{self.prefix}rb:lock"

    # artifacts --------------------------------------------------------------
    @property
    def artifact_prefix(self) -> str:
        return f"{self.prefix}art:"

    @staticmethod
    def artifact_member(job_id: str, name: str) -> str:
        """An artifact's name in its owner's ledger; the artifact key is prefix + this."""
        return f"{job_id}:{name}"

    def artifact(self, job_id: str, name: str) -> str:
        return f"{self.artifact_prefix}{self.artifact_member(job_id, name)}"

    def artifact_ledger(self, owner: str) -> str:
        return f"{self.prefix}artl:{owner}"

    def artifact_sizes(self, owner: str) -> str:
        return f"{self.prefix}arts:{owner}"

    # reaper -----------------------------------------------------------------
    @property
    def reaper_last_pass(self) -> str:
        return f"{self.prefix}reaper:last"

    @property
    def reaper_lock(self) -> str:
        return f"{self.prefix}lock:reap"

    @property
    def beat_last_tick(self) -> str:
        """Unix time of the last `maintenance.reap` a worker ran (the beat's last tick)."""
        return f"{self.prefix}beat:last"

    # worker nodes -----------------------------------------------------------
    @property
    def workers_online(self) -> str:
        """Live worker nodes: members ``{queue}|{node}``, scored by when they lapse."""
        return f"{self.prefix}workers"

    # target hosts -----------------------------------------------------------
    def breaker_namespace(self, host: str) -> str:
        """pybreaker's own keys live below this (``…:pybreaker:state`` and the like)."""
        return f"{self.prefix}cb:{host}"

    @property
    def breaker_hosts(self) -> str:
        return f"{self.prefix}cb:hosts"

    def host_slots(self, collector: str, host: str) -> str:
        """Held slots of one collector's calls to one host (its policy's host cap)."""
        return f"{self.prefix}hc:{collector}:{host}"

    # change detection (app.changes) -----------------------------------------
    def change_fingerprints(self, schedule_id: str) -> str:
        """A schedule's last good fingerprint per collector (hash: collector → JSON)."""
        return f"{self.prefix}chfp:{schedule_id}"

    def changes(self, schedule_id: str) -> str:
        """A schedule's change history (stream, bounded: count and age)."""
        return f"{self.prefix}chg:{schedule_id}"

    def change_done(self, job_id: str) -> str:
        """The change a job recorded ("" for none): a repeated finalizer finds it."""
        return f"{self.prefix}chgdone:{job_id}"

    # live events (app.jobs.events) -----------------------------------------
    def events(self, job_id: str) -> str:
        """A job's events (stream, bounded; expires with the job)."""
        return f"{self.prefix}ev:{job_id}"

    @property
    def owner_events_prefix(self) -> str:
        return f"{self.prefix}evo:"

    def owner_events(self, owner: str) -> str:
        """An owner's events (stream, bounded): ``GET /v1/events``."""
        return f"{self.owner_events_prefix}{owner}"

    @property
    def all_events(self) -> str:
        """Every event (stream, bounded): each API process's hub reads this one only."""
        return f"{self.prefix}ev-all"

    # API --------------------------------------------------------------------
    def wait_slots(self, client: str) -> str:
        """Held slots of one client's concurrent `?wait=` long-polls (a zset)."""
        return f"{self.prefix}ws:{client}"

    # identity ---------------------------------------------------------------
    def api_key(self, key_prefix: str) -> str:
        return f"{self.prefix}key:{key_prefix}"

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}keys"

    def api_key_events(self, key_prefix: str) -> str:
        """A key's audit trail (a stream, capped): created, rotated, revoked, new network."""
        return f"{self.prefix}keyev:{key_prefix}"

    def api_key_networks(self, key_prefix: str) -> str:
        """The client networks a key has been used from (a set of CIDR strings)."""
        return f"{self.prefix}keynet:{key_prefix}"

    @property
    def key_check_lock(self) -> str:
        """Held while a pass sends `key.expiring` webhooks (and until the next is due)."""
        return f"{self.prefix}lock:keycheck"

    @property
    def rate_limits(self) -> str:
        """flask-limiter's key prefix (it names the keys below it itself)."""
        return f"{self.prefix}rl"
