"""`collectq migrate`: upgrade every stored record older than its kind's current version.

For each kind (`app.migrations.kinds`): SCAN its key pattern (with the kind's Redis
type), a batch at a time; read the batch's records in one pipeline, then send the
upgrades in another, each an atomic script that writes only a record still as it was
read (`app.migrations.scripts`). A record that changed meanwhile is read again and
judged again: the service runs on while this does.

Idempotent, so resumable by running it again: nothing is kept between runs, a record
at its current version is counted and left alone. Writers of this version write every
new record at its current version, so records made during a run need nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from redis import Redis

from app.migrations.kinds import KINDS, Kind
from app.migrations.records import MigrationError, Records, Stored, Write, records_of
from app.rediskeys import RedisKeys

__all__ = ["Counts", "MigrationError", "migrate"]

MAX_PASSES = 20  # reads of one batch whose records the service keeps changing meanwhile
_GLOB = "*?[]\\"


@dataclass
class Counts:
    """Records of one kind: upgraded (in a dry run: to upgrade), already current, and
    newer than this collectq knows (left alone)."""

    upgraded: int = 0
    current: int = 0
    newer: int = 0

    @property
    def records(self) -> int:
        return self.upgraded + self.current + self.newer


def _match(keys: RedisKeys, kind: Kind) -> str:
    """The kind's SCAN pattern; the deployment's prefix taken literally."""
    name = kind.pattern(keys)
    prefix = "".join(f"\\{c}" if c in _GLOB else c for c in keys.prefix)
    return prefix + name.removeprefix(keys.prefix)


def _scan(redis: Redis, match: str, redis_type: str, count: int) -> Iterator[list[bytes]]:
    cursor = 0
    while True:
        cursor, found = cast(
            tuple[int, list[bytes]],
            redis.scan(cursor=cursor, match=match, count=count, _type=redis_type),
        )
        if found:
            yield found
        if cursor == 0:
            return


class _KindRun:
    def __init__(self, redis: Redis, kind: Kind, *, dry_run: bool) -> None:
        self.redis = redis
        self.kind = kind
        self.dry_run = dry_run
        self.records: Records = records_of(redis, kind)
        self.counts = Counts()

    def batch(self, keys: list[bytes]) -> None:
        done: dict[bytes, set[bytes]] = {key: set() for key in keys}  # upgraded by this run
        pending = keys
        for _ in range(MAX_PASSES):
            if not pending:
                return
            pending = self._pass(pending, done)
        raise MigrationError(
            f"{self.kind.name}: {len(pending)} keys kept changing, e.g. {pending[0].decode()}"
        )

    def _pass(self, keys: list[bytes], done: dict[bytes, set[bytes]]) -> list[bytes]:
        """One read and one write of `keys`; the keys to read again."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            self.records.read(pipe, key)
        snapshots = {
            key: [s for s in self.records.parse(key, reply) if s.ident not in done[key]]
            for key, reply in zip(keys, pipe.execute(), strict=True)
        }
        todo = {
            key: [s for s in snap if s.version < self.kind.current]
            for key, snap in snapshots.items()
        }
        if self.dry_run:
            for key, snap in snapshots.items():
                self.counts.upgraded += len(todo[key])
                self._tally(snap)
            return []
        pipe = self.redis.pipeline(transaction=False)
        writes = {
            key: self.records.write(pipe, key, snapshots[key], todo[key]) if todo[key] else []
            for key in keys
        }
        replies = iter(pipe.execute())
        again = []
        for key in keys:
            if self._judge(writes[key], replies, done[key]):
                self._tally(snapshots[key])
            else:
                again.append(key)
        return again

    def _judge(self, writes: list[Write], replies: Iterator[object], done: set[bytes]) -> bool:
        """Count what the writes upgraded; False if one found its record changed."""
        ok = True
        for w in writes:
            last = [next(replies) for _ in range(w.commands)][-1]
            if w.done(last):
                self.counts.upgraded += len(w.idents)
                done |= w.idents
            else:
                ok = False
        return ok

    def _tally(self, snapshot: list[Stored]) -> None:
        """Count the records of a finished key that needed nothing."""
        for s in snapshot:
            if s.version == self.kind.current:
                self.counts.current += 1
            elif s.version > self.kind.current:
                self.counts.newer += 1


def migrate(
    redis: Redis,
    keys: RedisKeys,
    *,
    dry_run: bool = False,
    batch: int = 500,
    kinds: Iterable[Kind] = KINDS,
) -> dict[str, Counts]:
    """Upgrade (or, `dry_run`, count) the stored records of `kinds`; counts per kind."""
    out = {}
    for kind in kinds:
        run = _KindRun(redis, kind, dry_run=dry_run)
        for found in _scan(redis, _match(keys, kind), kind.redis_type, batch):
            run.batch(found)
        out[kind.name] = run.counts
    return out
