"""`key.expiring`: the owner's account webhook hears of each key that is past its
rotation period or within the expiry warning window, once per key and reason.

Run by the maintenance tick (`maintenance.reap`), at most every `KEY_CHECK_INTERVAL`
seconds across all workers (a lock with that lifetime). A delivery is created once per
(key, reason) (`DeliveryStore.create`'s HSETNX), so a pass that runs twice sends nothing
twice; a key already rotated (its successor exists) is not announced, and an owner
without an endpoint (/v1/webhooks/endpoint) is told through the headers alone.
"""

from __future__ import annotations

import logging
import time

from celery import Celery

from app.auth.apikeys import ApiKey, KeyNotice, KeyStore
from app.auth.keyaudit import KeyEvent
from app.jobs.context import JobContext
from app.jobs.envelope import utcnow
from app.webhooks.deliver import delivery_store, endpoint_store
from app.webhooks.deliveries import DeliveryState
from app.webhooks.finalize import publish_delivery

__all__ = ["KEY_EXPIRING", "key_expiring_body", "notify_flagged_keys"]

log = logging.getLogger("collectq.webhooks")
KEY_EXPIRING = "key.expiring"


def key_expiring_body(
    key: ApiKey, notice: KeyNotice, *, warning: float, public_url: str | None
) -> dict[str, object]:
    """The payload (Standard Webhooks form): the key's public record, why, and where to
    rotate it (never a secret)."""
    data = key.public(warning=warning) | {
        "reason": notice.reason,
        "rotate_url": f"{(public_url or '').rstrip('/')}/v1/keys/self/rotate",
    }
    return {"type": KEY_EXPIRING, "timestamp": utcnow(), "data": data}


def notify_flagged_keys(ctx: JobContext, keys: KeyStore, celery: Celery) -> int | None:
    """One pass (None: another ran less than `KEY_CHECK_INTERVAL` ago); the deliveries
    published."""
    s = ctx.settings
    lock = ctx.store.keys.key_check_lock
    if not ctx.redis.set(lock, repr(time.time()), nx=True, ex=s.key_check_interval):
        return None
    endpoints, dstore = endpoint_store(ctx), delivery_store(ctx)
    published = 0
    for key, notice in keys.flagged(time.time(), s.key_expiry_warning):
        endpoint = endpoints.get(key.owner) if key.rotated_to is None else None
        if endpoint is None:
            continue
        subject = f"key_{key.prefix}"
        did = f"{subject}.{KEY_EXPIRING}.{notice.reason}"
        body = key_expiring_body(key, notice, warning=s.key_expiry_warning, public_url=s.public_url)
        record, created = dstore.create(
            subject, KEY_EXPIRING, endpoint["url"], account=(key.owner, did, body)
        )
        if created:
            keys.audit.record(key.prefix, KeyEvent.EXPIRING, "system", reason=notice.reason)
        if created or (record["state"] == DeliveryState.PENDING and not record["attempts"]):
            publish_delivery(celery, subject, did, 0, countdown=None)
            published += 1
    if published:
        log.info("key.expiring webhooks published", extra={"count": published})
    return published
