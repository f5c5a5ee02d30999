"""Artifacts: a collector's raw bytes (response bodies, screenshots) next to its job.

Layout (under the prefix ``p``; names in `app.rediskeys`)::

    p art:{id}:{name}   hash  body content_type schema_version   body: raw bytes, never base64
    p artl:{owner}      zset  {id}:{name} → time stored (the owner's artifact ledger)
    p arts:{owner}      hash  {id}:{name} → bytes, _total (against ARTIFACT_BUDGET_BYTES)

Each owner keeps at most a byte budget: storing evicts the owner's oldest
artifacts first (one atomic script, `lua.PUT_ARTIFACT`). The envelope lists an
artifact's name, type and size; its URL is the API's business, added when the
API renders a job (`api.jobs`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from redis import Redis

from app.jobs import lua
from app.migrations import versions
from app.rediskeys import RedisKeys
from collectors.base import Artifact

__all__ = ["ArtifactStore"]

log = logging.getLogger("collectq.artifacts")

UNOWNED = "public"


class ArtifactStore:
    def __init__(self, redis: Redis, keys: RedisKeys, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._put = redis.register_script(lua.PUT_ARTIFACT)

    def put(
        self,
        job_id: str,
        name: str,
        content_type: str,
        body: bytes,
        *,
        budget: int = 0,
        owner: str | None = None,
    ) -> tuple[bool, int]:
        """Store an artifact within its owner's byte `budget` (0: none).

        Returns (stored, how many of the owner's oldest artifacts were evicted
        to make room). An artifact larger than the whole budget is not stored.
        `owner`: the job's, when the caller read it already (else it is read here).
        """
        job = self.keys.job(job_id)
        if owner is None:
            found = cast(bytes | None, self.redis.hget(job, "owner"))
            owner = found.decode() if found is not None else UNOWNED
        owner_name = owner
        out = cast(
            list[int],
            self._put(
                keys=[
                    job,
                    self.keys.artifact(job_id, name),
                    self.keys.artifact_ledger(owner_name),
                    self.keys.artifact_sizes(owner_name),
                ],
                args=[
                    body,
                    content_type,
                    self.ttl,
                    self.keys.artifact_member(job_id, name),
                    time.time(),
                    budget,
                    self.keys.artifact_prefix,
                    versions.FIELD,
                    versions.ARTIFACT,
                ],
            ),
        )
        return bool(out[0]), int(out[1])

    def put_all(
        self, job_id: str, artifacts: list[Artifact], *, budget: int, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Store a result's artifacts; return their metadata for the envelope."""
        infos: list[dict[str, Any]] = []
        for art in artifacts:
            stored, evicted = self.put(
                job_id, art.name, art.content_type, art.body, budget=budget, owner=owner
            )
            info: dict[str, Any] = {
                "name": art.name,
                "content_type": art.content_type,
                "size": len(art.body),
            }
            if not stored:
                info["dropped"] = f"larger than the owner's artifact budget ({budget} bytes)"
            if evicted:
                log.info("artifact budget: evicted %d older", evicted, extra={"job_id": job_id})
            infos.append(info)
        return infos

    def bytes_held(self, owner: str) -> int:
        """Bytes of artifacts `owner` holds (as of the last store)."""
        total = cast(bytes | None, self.redis.hget(self.keys.artifact_sizes(owner), "_total"))
        return int(total or 0)

    def get(self, job_id: str, name: str) -> tuple[bytes, str] | None:
        """(raw bytes, content type), or None if there is no such artifact (or it expired)."""
        body, ctype = cast(
            list[bytes | None],
            self.redis.hmget(self.keys.artifact(job_id, name), ["body", "content_type"]),
        )
        if body is None or ctype is None:
            return None
        return body, ctype.decode()
