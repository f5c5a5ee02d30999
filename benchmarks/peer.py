"""The hand-written peer: the Flask + Celery submit service a user would write instead.

A Flask app that validates the same request with marshmallow, writes a job hash to Redis and
calls `apply_async` with publisher confirms; a Celery task that records the result in that
hash; a poll route that reads it. No authentication, rate limits, idempotency, quotas, reuse,
events or per-collector results: what collectq adds is what the bench compares against this.
Same broker, worker pool, prefetch and acks_late as collectq's worker (benchmarks/__main__.py).
Configured from BENCH_BROKER_URL / BENCH_REDIS_URL / BENCH_PREFIX.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, cast

import redis
from celery import Celery
from flask import Flask, abort, request
from marshmallow import Schema, ValidationError, fields, validate

from benchmarks.bare_celery import WORKER_CONF

__all__ = ["application", "celery", "collect"]


class JobRequest(Schema):
    target = fields.String(required=True, validate=validate.Length(1, 2048))
    collectors = fields.List(
        fields.String(validate=validate.OneOf(["noop", "http", "dns", "tls", "screenshot"])),
        required=True,
        validate=validate.Length(1, 16),
    )
    options = fields.Dict(load_default=dict)
    labels = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


celery = Celery("peer")
celery.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL"),
    task_default_queue="peer",
    task_ignore_result=True,
    **WORKER_CONF,
)
_redis: redis.Redis | None = None


def store() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
    return _redis


def _key(job_id: str) -> str:
    return f"{os.environ.get('BENCH_PREFIX', 'peer:')}job:{job_id}"


@celery.task(name="peer.collect")
def collect(job_id: str) -> None:
    store().hset(_key(job_id), mapping={"status": "succeeded", "result": '{"ok": true}'})


def create() -> Flask:
    app = Flask("peer")
    schema = JobRequest()

    @app.post("/v1/jobs")
    def submit() -> Any:
        try:
            job = schema.load(request.get_json(force=True))
        except ValidationError as exc:
            return {"errors": exc.messages}, 422
        job_id = uuid.uuid4().hex
        pipe = store().pipeline(transaction=False)
        pipe.hset(
            _key(job_id),
            mapping={"status": "queued", "target": job["target"], "created_at": time.time()},
        )
        pipe.expire(_key(job_id), 3600)
        pipe.execute()
        collect.apply_async((job_id,))
        return {"id": job_id, "status": "queued", "target": job["target"]}, 202

    @app.get("/v1/jobs/<job_id>")
    def poll(job_id: str) -> Any:
        job = cast(dict[bytes, bytes], store().hgetall(_key(job_id)))
        if not job:
            abort(404)
        return {k.decode(): v.decode() for k, v in job.items()}

    return app


application = create()
