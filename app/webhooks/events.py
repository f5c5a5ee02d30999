"""Which webhook events a final job sends, and the body each one carries."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from app.jobs.envelope import utcnow
from schemas.status import JobStatus
from schemas.webhooks import EVENTS

__all__ = ["CALLBACK_ON", "EVENTS", "body_for", "event_of", "events_for"]

CALLBACK_ON = ("always", "failure", "change")
CHANGED = "schedule.changed"

# A cancelled job sends nothing: the client who cancelled it knows. An expired job
# did not deliver what was asked: it is a failure to whoever waits for it.
_EVENT_OF = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.PARTIAL: "job.partial",
    JobStatus.FAILED: "job.failed",
    JobStatus.EXPIRED: "job.failed",
}
_FAILURES = frozenset({"job.partial", "job.failed"})


def event_of(status: str) -> str | None:
    """The job.* event of a final status (None: cancelled, or not final)."""
    return _EVENT_OF.get(status)  # type: ignore[call-overload,no-any-return]


def events_for(status: str, on: list[str], changed: bool) -> list[str]:
    """The events a job with final `status`, callback `on`, sends (each at most once)."""
    events: list[str] = []
    event = event_of(status)
    if event is not None and ("always" in on or ("failure" in on and event in _FAILURES)):
        events.append(event)
    if changed and "change" in on:
        events.append(CHANGED)
    return events


def body_for(
    event: str,
    envelope: dict[str, Any],
    *,
    public_url: str | None,
    change: Any = None,
    read: Callable[[str], bytes | None] | None = None,
    inline_max: int = 0,
) -> dict[str, Any]:
    """The payload (Standard Webhooks form: type, timestamp, data): `data` is the envelope
    as ``GET /v1/jobs/{id}`` shows it, artifacts as links (absolute under `public_url`,
    else relative), plus the change for ``schedule.changed``.

    With `read` (an artifact's bytes by name; the callback asked for `inline`), each
    artifact also carries ``inline: true`` and ``content_base64`` while the delivery's
    raw bytes stay within `inline_max`, in envelope order; beyond it, or gone from the
    store, ``inline: false`` and a ``reason`` (the link stays)."""
    data = copy.deepcopy(envelope)
    base = (public_url or "").rstrip("/")
    left = inline_max
    for result in data["results"].values():
        for art in result.get("artifacts") or ():
            if "dropped" in art:
                continue
            art["url"] = f"{base}/v1/jobs/{data['id']}/artifacts/{art['name']}"
            if read is not None:
                left = _inline(art, read, left)
    if event == CHANGED:
        data["change"] = change
    return {"type": event, "timestamp": utcnow(), "data": data}


def _inline(art: dict[str, Any], read: Callable[[str], bytes | None], left: int) -> int:
    """Put `art`'s bytes in it if they fit in `left`; return the bytes left."""
    if int(art.get("size") or 0) > left:
        art |= {"inline": False, "reason": "over WEBHOOK_INLINE_MAX_BYTES"}
        return left
    body = read(art["name"])
    if body is None:
        art |= {"inline": False, "reason": "expired"}
        return left
    if len(body) > left:
        art |= {"inline": False, "reason": "over WEBHOOK_INLINE_MAX_BYTES"}
        return left
    art |= {"inline": True, "content_base64": base64.b64encode(body).decode("ascii")}
    return left - len(body)
