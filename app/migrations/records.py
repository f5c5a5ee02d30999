"""Reading and upgrading the records of one key, per shape (`kinds.Shape`).

Each shape queues its reads and its writes on a pipeline, so the runner moves a
whole SCAN batch in two round trips; every write is one of the atomic scripts in
`app.migrations.scripts`, which writes only what is still as it was read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis import Redis
from redis.client import Pipeline

from app.migrations import scripts, versions
from app.migrations.kinds import Kind, Shape

__all__ = ["MigrationError", "Records", "Stored", "Write", "records_of"]


class MigrationError(Exception):
    """A record the runner cannot read or could not write (see the message)."""


@dataclass(frozen=True)
class Stored:
    """One record as read: which one of its key (hash field, member, entry id; ``b""`` for
    a key that is one record), its stored version, its raw JSON (JSON shapes)."""

    ident: bytes
    version: int
    raw: bytes = b""


@dataclass(frozen=True)
class Write:
    """Commands queued for some records: `done` judges the last reply."""

    commands: int
    idents: frozenset[bytes]
    done: Callable[[Any], bool]


class Records(Protocol):
    def read(self, pipe: Pipeline, key: bytes) -> None: ...

    def parse(self, key: bytes, reply: Any) -> list[Stored]: ...

    def write(
        self, pipe: Pipeline, key: bytes, snapshot: list[Stored], todo: list[Stored]
    ) -> list[Write]: ...


def _json_version(key: bytes, raw: bytes) -> int:
    try:
        return versions.version_of(json.loads(raw))
    except (ValueError, TypeError, AttributeError) as exc:
        raise MigrationError(f"{key.decode()}: a record that is not a JSON object") from exc


class _Json:
    """Shared by the JSON shapes: a record's upgraded text."""

    def __init__(self, redis: Redis, kind: Kind, script: str) -> None:
        self.kind = kind
        self.script = redis.register_script(script)

    def upgraded(self, raw: bytes) -> bytes:
        return self.kind.encode(self.kind.upgraded(json.loads(raw))).encode()


class HashRecords:
    """A key that is one record, a hash: each step is one `HASH_STEP`."""

    def __init__(self, redis: Redis, kind: Kind) -> None:
        self.kind = kind
        self.step = redis.register_script(scripts.HASH_STEP)

    def read(self, pipe: Pipeline, key: bytes) -> None:
        pipe.hmget(key, [self.kind.marker, versions.FIELD])

    def parse(self, key: bytes, reply: Any) -> list[Stored]:
        marker, version = cast(list[bytes | None], reply)
        if marker is None:  # expired or deleted since the SCAN, or not complete yet
            return []
        try:
            return [Stored(b"", int(version or versions.UNVERSIONED))]
        except ValueError as exc:
            raise MigrationError(f"{key.decode()}: {versions.FIELD} {version!r}") from exc

    def write(
        self, pipe: Pipeline, key: bytes, snapshot: list[Stored], todo: list[Stored]
    ) -> list[Write]:
        (record,) = todo
        kind = self.kind
        for v in range(record.version, kind.current):
            defaults = [x for pair in kind.steps[v].defaults.items() for x in pair]
            args: list[str | int] = [versions.FIELD, kind.marker, v, v + 1, versions.UNVERSIONED]
            args += defaults
            self.step(keys=[key], args=args, client=pipe)
        steps = kind.current - record.version
        return [Write(steps, frozenset({b""}), lambda reply: int(reply) == kind.current)]


class HashJsonRecords(_Json):
    """A hash whose field values are JSON records (fields with `skip_prefix` are not)."""

    def __init__(self, redis: Redis, kind: Kind) -> None:
        super().__init__(redis, kind, scripts.HASH_CAS)
        self.skip = kind.skip_prefix.encode()

    def read(self, pipe: Pipeline, key: bytes) -> None:
        pipe.hgetall(key)

    def parse(self, key: bytes, reply: Any) -> list[Stored]:
        items = cast(dict[bytes, bytes], reply).items()
        return [
            Stored(f, _json_version(key, v), v)
            for f, v in items
            if not (self.skip and f.startswith(self.skip))
        ]

    def write(
        self, pipe: Pipeline, key: bytes, snapshot: list[Stored], todo: list[Stored]
    ) -> list[Write]:
        out = []
        for r in todo:
            self.script(keys=[key], args=[r.ident, r.raw, self.upgraded(r.raw)], client=pipe)
            out.append(Write(1, frozenset({r.ident}), bool))
        return out


class ZsetJsonRecords(_Json):
    """A sorted set whose members are JSON records: a member is replaced, score kept."""

    def __init__(self, redis: Redis, kind: Kind) -> None:
        super().__init__(redis, kind, scripts.ZSET_CAS)

    def read(self, pipe: Pipeline, key: bytes) -> None:
        pipe.zrange(key, 0, -1)

    def parse(self, key: bytes, reply: Any) -> list[Stored]:
        return [Stored(m, _json_version(key, m), m) for m in cast(list[bytes], reply)]

    def write(
        self, pipe: Pipeline, key: bytes, snapshot: list[Stored], todo: list[Stored]
    ) -> list[Write]:
        out = []
        for r in todo:
            new = self.upgraded(r.raw)
            self.script(keys=[key], args=[r.raw, new], client=pipe)
            out.append(Write(1, frozenset({new}), bool))  # the member's new identity
        return out


class StringJsonRecords(_Json):
    """A string holding one JSON record ("" holds none)."""

    def __init__(self, redis: Redis, kind: Kind) -> None:
        super().__init__(redis, kind, scripts.STRING_CAS)

    def read(self, pipe: Pipeline, key: bytes) -> None:
        pipe.get(key)

    def parse(self, key: bytes, reply: Any) -> list[Stored]:
        raw = cast(bytes | None, reply)
        return [Stored(b"", _json_version(key, raw), raw)] if raw else []

    def write(
        self, pipe: Pipeline, key: bytes, snapshot: list[Stored], todo: list[Stored]
    ) -> list[Write]:
        (r,) = todo
        self.script(keys=[key], args=[r.raw, self.upgraded(r.raw)], client=pipe)
        return [Write(1, frozenset({b""}), bool)]


class StreamJsonRecords(_Json):
    """A stream whose entries hold a JSON record in `entry_field`: written again whole."""

    def __init__(self, redis: Redis, kind: Kind) -> None:
        super().__init__(redis, kind, scripts.STREAM_REBUILD)
        self.field = kind.entry_field.encode()

    def read(self, pipe: Pipeline, key: bytes) -> None:
        pipe.xrange(key, "-", "+")

    def parse(self, key: bytes, reply: Any) -> list[Stored]:
        out = []
        for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], reply):
            if set(fields) != {self.field}:  # a rebuild would lose the other fields
                raise MigrationError(f"{key.decode()} {entry_id.decode()}: unknown entry fields")
            out.append(Stored(entry_id, _json_version(key, fields[self.field]), fields[self.field]))
        return out

    def write(
        self, pipe: Pipeline, key: bytes, snapshot: list[Stored], todo: list[Stored]
    ) -> list[Write]:
        changed = {r.ident for r in todo}
        entries = [
            x
            for s in snapshot
            for x in (s.ident, self.upgraded(s.raw) if s.ident in changed else s.raw)
        ]
        head: list[bytes | int] = [len(snapshot), snapshot[0].ident, snapshot[-1].ident]
        head.append(self.field)
        self.script(keys=[key], args=[*head, *entries], client=pipe)
        return [Write(1, frozenset(changed), bool)]


_BY_SHAPE: dict[Shape, Callable[[Redis, Kind], Records]] = {
    Shape.HASH: HashRecords,
    Shape.HASH_OF_JSON: HashJsonRecords,
    Shape.ZSET_OF_JSON: ZsetJsonRecords,
    Shape.STRING_JSON: StringJsonRecords,
    Shape.STREAM_OF_JSON: StreamJsonRecords,
}


def records_of(redis: Redis, kind: Kind) -> Records:
    return _BY_SHAPE[kind.shape](redis, kind)
