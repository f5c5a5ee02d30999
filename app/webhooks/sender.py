"""Send one signed webhook request through the network guard.

The connection is the http collector's (`collectors.guardedpool`): the name is
resolved and every address checked, and the socket connects to the checked
address, so a callback name that rebinds to a private address after the submit
check cannot reach it. No redirects are followed: a receiver answers, or fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import HTTPError

from collectors import netguard
from collectors.base import CollectorError, NetworkPolicy
from collectors.guardedpool import GuardedPoolManager
from collectors.http import parse_retry_after

__all__ = ["Answer", "post_signed", "sign"]

USER_AGENT = "collectq-webhooks/1"
EXCERPT_BYTES = 256


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status (and excerpt), or an error; and how long it took."""

    status: int | None
    excerpt: str | None
    error: str | None
    seconds: float
    retry_after: float | None = None
    blocked: bool = False  # refused by the guard or an invalid URL: no retry helps


def sign(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in secrets)


def post_signed(
    url: str,
    body: str,
    *,
    msg_id: str,
    secrets: list[str],
    policy: NetworkPolicy,
    timeout: float,
) -> Answer:
    """POST `body` to `url`, signed with every secret in `secrets`."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(secrets, msg_id, now, body),
    }
    started = time.perf_counter()
    manager = GuardedPoolManager(policy, num_pools=1, maxsize=1)
    try:
        netguard.check_url(url)
        resp = manager.request(
            "POST",
            url,
            body=body.encode(),
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        try:
            raw = resp.read(EXCERPT_BYTES, decode_content=False)
        finally:
            resp.release_conn()
        return Answer(
            status=resp.status,
            excerpt=raw.decode("utf-8", "replace"),
            error=None,
            seconds=time.perf_counter() - started,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )
    except CollectorError as exc:
        return Answer(
            None,
            None,
            f"{exc.type}: {exc}",
            time.perf_counter() - started,
            blocked=not exc.retryable,
        )
    except (HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None)
        if isinstance(reason, CollectorError):  # the guard's error, wrapped by urllib3
            return Answer(
                None,
                None,
                f"{reason.type}: {reason}",
                time.perf_counter() - started,
                blocked=not reason.retryable,
            )
        return Answer(None, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    finally:
        manager.clear()
