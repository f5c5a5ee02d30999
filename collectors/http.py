"""The http collector: one GET/HEAD with redirects followed hop by hop, body as an artifact.

urllib3 does the HTTP; its connections are opened by the network guard, so the
first hop and every redirect connect only to an address the guard checked.
"""

from __future__ import annotations

import hashlib
import socket
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from collectors import netguard
from collectors.base import (
    Artifact,
    CollectContext,
    Collector,
    CollectorError,
    InvalidTarget,
    NetworkPolicy,
    Result,
    TargetConnectError,
    TargetTimeout,
    TransientResponse,
)
from schemas.http import HttpOptionsSchema, HttpResultSchema

__all__ = ["HttpCollector", "TlsError"]

USER_AGENT = "collectq/0.1 (+https://github.com/collectq)"
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024


class TlsError(CollectorError):
    """Certificate or handshake failure: a property of the target, not worth retrying."""

    type = "tls_error"


class _GuardedMixin:
    """Open the socket through the network guard instead of urllib3's resolver."""

    policy: NetworkPolicy
    host: str
    port: int
    timeout: float | None

    def __init__(self, *args: Any, policy: NetworkPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        return netguard.guarded_connection(self.host, self.port, self.policy, self.timeout)


class _GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _pool_key(context: dict[str, Any]) -> tuple[str, str, int | None]:
    return (context["scheme"].lower(), context["host"].lower(), context.get("port"))


def _target_url(target: str) -> str:
    if "://" in target:
        return target
    host = f"[{target}]" if ":" in target and not target.startswith("[") else target
    return f"https://{host}/"


class HttpCollector(Collector):
    name = "http"
    options_schema = HttpOptionsSchema
    result_schema = HttpResultSchema

    def __init__(self) -> None:
        self._managers: dict[NetworkPolicy, urllib3.PoolManager] = {}

    def _manager(self, policy: NetworkPolicy) -> urllib3.PoolManager:
        # One pool manager per policy (in practice one per process), created lazily after fork.
        manager = self._managers.get(policy)
        if manager is None:
            manager = urllib3.PoolManager(num_pools=64, maxsize=8, block=False, policy=policy)
            manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
            # Everything but the address is fixed per manager, so that is the pool key
            # (urllib3's default key function refuses our extra `policy` argument).
            keys: dict[str, Any] = {scheme: _pool_key for scheme in ("http", "https")}
            manager.key_fn_by_scheme = keys
            self._managers[policy] = manager
        return manager

    def close(self) -> None:
        for manager in self._managers.values():
            manager.clear()
        self._managers.clear()

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        url = _target_url(target)
        manager = self._manager(ctx.policy)
        timeout = urllib3.Timeout(connect=options["timeout"], read=options["timeout"])
        headers = {"User-Agent": USER_AGENT, **options["headers"]}
        method = options["method"]
        redirects: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        while True:
            netguard.check_url(url)
            resp = self._request(manager, method, url, headers, timeout)
            location = resp.headers.get("Location")
            if not (options["follow_redirects"] and resp.status in REDIRECTS and location):
                break
            resp.drain_conn()
            resp.release_conn()
            if len(redirects) >= options["max_redirects"]:
                raise InvalidTarget(f"more than {options['max_redirects']} redirects")
            redirects.append({"status_code": resp.status, "url": url})
            url = urljoin(url, location)
            if resp.status == 303:
                method = "GET" if method != "HEAD" else "HEAD"
        ttfb = time.perf_counter() - t0
        body, truncated = self._read(resp, options["max_body_bytes"], options["timeout"])
        content_type = resp.headers.get("Content-Type")
        data = {
            "status_code": resp.status,
            "reason": resp.reason or "",
            "http_version": f"HTTP/{resp.version / 10:.1f}" if resp.version else "",
            "headers": dict(resp.headers.items()),
            "final_url": url,
            "redirects": redirects,
            "content_type": content_type,
            "body_size": len(body),
            "body_truncated": truncated,
            "body_sha256": hashlib.sha256(body).hexdigest() if method != "HEAD" else None,
            "timing": {
                "ttfb_ms": round(ttfb * 1000, 1),
                "total_ms": round((time.perf_counter() - t0) * 1000, 1),
            },
        }
        artifacts = []
        if body:
            ctype = content_type or "application/octet-stream"
            artifacts.append(Artifact("http.body", ctype, body))
        result = Result(data=data, artifacts=artifacts)
        if resp.status == 429 or resp.status >= 500:
            raise TransientResponse(
                f"target answered {resp.status}",
                result,
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        return result

    @staticmethod
    def _request(
        manager: urllib3.PoolManager,
        method: str,
        url: str,
        headers: dict[str, str],
        timeout: urllib3.Timeout,
    ) -> urllib3.BaseHTTPResponse:
        try:
            return manager.request(
                method,
                url,
                headers=headers,
                timeout=timeout,
                redirect=False,
                retries=False,
                preload_content=False,
            )
        except (TimeoutError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise TargetTimeout(f"{url}: timed out") from exc
        except SSLError as exc:
            raise TlsError(f"{url}: TLS failed: {exc}") from exc
        except (ProtocolError, HTTPError, OSError) as exc:
            raise TargetConnectError(f"{url}: {exc}") from exc

    @staticmethod
    def _read(resp: urllib3.BaseHTTPResponse, limit: int, timeout: float) -> tuple[bytes, bool]:
        """Read at most `limit` bytes; a longer body is cut and its connection dropped."""
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.stream(CHUNK):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    resp.close()  # do not reuse a connection with unread bytes
                    return b"".join(chunks)[:limit], True
        except (TimeoutError, ReadTimeoutError) as exc:
            raise TargetTimeout(f"reading the body timed out after {timeout}s") from exc
        except (ProtocolError, HTTPError) as exc:
            raise TargetConnectError(f"reading the body failed: {exc}") from exc
        resp.release_conn()
        return b"".join(chunks), False
