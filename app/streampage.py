"""Pages of a Redis stream of JSON records, newest first, with the entry id as cursor.

Shared by the lists backed by streams (a schedule's changes, a key's audit trail): the
cursor is the id of the last entry of the page before, so a page never repeats or skips
an entry when newer ones arrive meanwhile.
"""

from __future__ import annotations

import json
from typing import Any, cast

from redis import Redis

from app.errors import ValidationFailed
from app.migrations import versions
from schemas import STREAM_CURSOR_PATTERN, full_match

__all__ = ["newest_first", "stream_floor"]

_ID_PART_MAX = 2**64  # a stream id is two unsigned 64-bit integers


def stream_floor(at: float) -> str:
    """The smallest stream id written at or after `at` (seconds)."""
    return f"{max(0, int(at * 1000))}-0"


def newest_first(
    redis: Redis,
    key: str,
    entry_field: str,
    *,
    limit: int,
    cursor: str | None = None,
    floor: str = "-",
) -> tuple[list[dict[str, Any]], str | None]:
    """At most `limit` records of the stream `key` (each the JSON in `entry_field`), newest
    first, older than `cursor` and not older than `floor`; and the next page's cursor."""
    if cursor is not None and not full_match(STREAM_CURSOR_PATTERN, cursor):
        raise ValidationFailed({"cursor": ["not a cursor of this list"]})
    top = "+"
    if cursor is not None:
        ms, seq = (int(part) for part in cursor.split("-"))
        if ms == seq == 0:
            return [], None  # nothing is older than the first id ("(0-0" is an error)
        if ms >= _ID_PART_MAX:  # beyond every stream id: from the newest
            ms, seq = _ID_PART_MAX - 1, _ID_PART_MAX - 1
        top = f"({ms}-{min(seq, _ID_PART_MAX - 1)}"
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        redis.xrevrange(key, top, floor, count=limit + 1),
    )
    items = [
        versions.unstamped(json.loads(fields[entry_field.encode()]))
        for _, fields in entries[:limit]
    ]
    more = len(entries) > limit
    return items, (entries[limit - 1][0].decode() if more else None)
