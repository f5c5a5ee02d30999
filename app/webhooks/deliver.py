"""Deliver one webhook: one attempt per call, recorded; a retry is the caller's to schedule.

Retried (exponential backoff with full jitter, `app.jobs.backoff`): network errors,
timeouts, 429 (its Retry-After honoured up to `WEBHOOK_BACKOFF_MAX`) and 5xx. Any
other answer, a URL the network guard refuses, or `WEBHOOK_MAX_ATTEMPTS` used up:
the delivery is `failed`. A 2xx: `delivered`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app import metrics
from app.jobs.backoff import backoff_delay
from app.jobs.context import JobContext
from app.jobs.envelope import utcnow
from app.webhooks.deliveries import FINAL_STATES, DeliveryState, DeliveryStore
from app.webhooks.endpoint import EndpointStore
from app.webhooks.events import body_for
from app.webhooks.secrets import SecretStore
from app.webhooks.sender import Answer, post_signed

__all__ = ["Again", "deliver", "delivery_store", "endpoint_store", "secret_store"]

log = logging.getLogger("collectq.webhooks")

# Seconds past an attempt's longest possible run after which its claim is taken over.
CLAIM_GRACE = 30.0


@dataclass(frozen=True)
class Again:
    """Attempt the delivery again in `delay` seconds (its `retrying` state is recorded)."""

    delay: float
    attempt: int  # the number of attempts made so far


def delivery_store(ctx: JobContext) -> DeliveryStore:
    return DeliveryStore(ctx.redis, ctx.store.keys, ctx.store.ttl)


def secret_store(ctx: JobContext) -> SecretStore:
    return SecretStore(ctx.redis, ctx.store.keys)


def endpoint_store(ctx: JobContext) -> EndpointStore:
    return EndpointStore(ctx.redis, ctx.store.keys)


def _reader(ctx: JobContext, job_id: str) -> Callable[[str], bytes | None]:
    """An artifact of `job_id`'s bytes by name (None: gone)."""

    def read(name: str) -> bytes | None:
        found = ctx.store.artifacts.get(job_id, name)
        return found[0] if found is not None else None

    return read


def _retryable(answer: Answer) -> bool:
    if answer.blocked:
        return False
    if answer.status is None:
        return True  # network error, timeout
    return answer.status == 429 or answer.status >= 500


def _retry_left(record: dict[str, Any]) -> float:
    """Seconds until the retry the last attempt scheduled is due (0 when it is past)."""
    last = record["attempts"][-1]
    due = datetime.fromisoformat(last["at"]).timestamp() + float(last.get("retry_in_s") or 0)
    return max(0.0, due - time.time())


def _payload(ctx: JobContext, job_id: str, record: dict[str, Any]) -> tuple[str, str] | None:
    """The owner and the body (built once per attempt and signed as sent) of a delivery;
    None when its job expired. An account event carries both in its record."""
    if "body" in record:
        return record["owner"], json.dumps(record["body"], separators=(",", ":"))
    owner = ctx.store.owner_of(job_id)
    envelope = ctx.store.get(job_id)
    if envelope is None or owner is None:
        return None
    inline = (envelope.get("callback") or {}).get("artifacts") == "inline"
    body = body_for(
        record["event"],
        envelope,
        public_url=ctx.settings.public_url,
        change=record.get("change"),
        read=_reader(ctx, job_id) if inline else None,
        inline_max=ctx.settings.webhook_inline_max_bytes,
    )
    return owner, json.dumps(body, separators=(",", ":"))


def deliver(ctx: JobContext, job_id: str, did: str, attempts_before: int) -> str | Again:
    """Attempt delivery `did` of `job_id` once, unless it is done or another task claimed
    attempt number `attempts_before + 1` already (a duplicate message)."""
    dstore = delivery_store(ctx)
    record = dstore.get(job_id, did)
    if record is None or record["state"] in FINAL_STATES:
        return "done"
    attempt = len(record["attempts"]) + 1
    if record["state"] == DeliveryState.RETRYING and attempt == attempts_before + 2:
        # this message made the last attempt, but the retry it scheduled was never
        # published (the broker failed then, the message came back): schedule it now;
        # should it exist after all, the next attempt's claim keeps it single
        return Again(_retry_left(record), attempts_before + 1)
    # an attempt lasts at most about two timeouts (connect, then the answer)
    stale = 2 * ctx.settings.webhook_timeout + CLAIM_GRACE
    if attempt != attempts_before + 1 or not dstore.claim(job_id, did, attempt, stale_after=stale):
        return "duplicate"
    payload = _payload(ctx, job_id, record)
    if payload is None:
        dstore.add_attempt(
            job_id, did, {"at": utcnow(), "error": "job expired"}, DeliveryState.FAILED
        )
        return DeliveryState.FAILED.value
    owner, body = payload
    settings = ctx.settings
    answer = post_signed(
        record["url"],
        body,
        msg_id=did,
        secrets=secret_store(ctx).get(owner).signing(),
        policy=ctx.policy,
        timeout=settings.webhook_timeout,
    )
    metrics.observe_webhook_attempt(record["event"], answer.seconds)
    ok = answer.status is not None and 200 <= answer.status < 300
    again = not ok and _retryable(answer) and attempt < settings.webhook_max_attempts
    state = (
        DeliveryState.DELIVERED
        if ok
        else (DeliveryState.RETRYING if again else DeliveryState.FAILED)
    )
    entry: dict[str, object] = {
        "attempt": attempt,
        "at": utcnow(),
        "status_code": answer.status,
        "error": answer.error,
        "duration_ms": round(answer.seconds * 1000, 1),
        "response": answer.excerpt,
    }
    delay = 0.0
    if again:
        delay = backoff_delay(
            attempt,
            base=settings.webhook_backoff_base,
            cap=settings.webhook_backoff_max,
            retry_after=answer.retry_after,
        )
        entry["retry_in_s"] = round(delay, 3)
    dstore.add_attempt(job_id, did, entry, state)
    metrics.count_webhook_delivery(record["event"], state.value)
    if state is DeliveryState.FAILED:
        log.warning(
            "webhook delivery failed",
            extra={
                "job_id": job_id,
                "delivery": did,
                "status_code": answer.status,
                "error": answer.error,
            },
        )
    return Again(delay, attempt) if again else state.value
