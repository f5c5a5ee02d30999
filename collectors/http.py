"""The http collector: one GET/HEAD, redirects followed hop by hop, body as an artifact.

urllib3 does the HTTP, but never resolves a name: its connections open their
socket through :func:`collectors.netguard.guarded_connection`, which resolves,
checks every address and connects to the checked one. urllib3 still knows the
original host, so the Host header, TLS SNI and certificate hostname checks use
the name while the packets go to the pinned address. Redirects are followed
here, not by urllib3, so every hop's URL is checked and its connection guarded.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, urljoin

import urllib3
from urllib3 import BaseHTTPResponse, HTTPHeaderDict
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    DecodeError,
    HTTPError,
    LocationValueError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from collectors import fingerprint as fp
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
    TlsError,
    TransientResponse,
)
from collectors.guardedpool import GuardedConnection as _GuardedConnection
from collectors.guardedpool import GuardedPoolManager as _GuardedPoolManager
from schemas.http import HttpOptionsSchema, HttpResultSchema

__all__ = ["HttpCollector", "TlsError", "TooManyRedirects", "parse_retry_after"]

USER_AGENT = "collectq/0.1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Credentials meant for one origin must not travel to the next (same list as urllib3's Retry).
CROSS_ORIGIN_STRIP = ("Authorization", "Cookie", "Proxy-Authorization")
CHUNK = 64 * 1024
REDIRECT_DRAIN_LIMIT = 64 * 1024


class TooManyRedirects(InvalidTarget):
    """The redirect chain is longer than `max_redirects`."""

    type = "too_many_redirects"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP-dates are always GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname or "", parts.port or default


def _request_target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _remaining(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TargetTimeout(f"the fetch did not finish within {timeout}s")
    return left


class HttpCollector(Collector):
    """GET or HEAD one URL. One instance per worker process; its pools live on it."""

    name = "http"
    options_schema = HttpOptionsSchema
    result_schema = HttpResultSchema

    # `maxsize`: idle connections kept per origin. A pool only ever holds as many as were in
    # use at once (at most the worker's threads), so a high cap costs nothing at low
    # concurrency; below the worker's concurrency, every fetch past the cap would open a
    # new connection and log "pool is full" when it is thrown away (COLLECTQ_POOL_HTTP up to
    # 256 threads keeps its connections).
    def __init__(
        self, *, ca_certs: str | None = None, num_pools: int = 64, maxsize: int = 256
    ) -> None:
        self._pool_kw: dict[str, Any] = {"num_pools": num_pools, "maxsize": maxsize}
        if ca_certs is not None:  # a private CA (and tests); the system store otherwise
            self._pool_kw["ca_certs"] = ca_certs
        self._managers: dict[NetworkPolicy, _GuardedPoolManager] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _manager(self, policy: NetworkPolicy) -> _GuardedPoolManager:
        with self._lock:
            if self._pid != os.getpid():
                # Forked after use: the parent's sockets are not ours to reuse (or close).
                self._managers, self._pid = {}, os.getpid()
            manager = self._managers.get(policy)
            if manager is None:  # lazily, i.e. after the worker forked
                manager = _GuardedPoolManager(policy, block=False, **self._pool_kw)
                self._managers[policy] = manager
            return manager

    def close(self) -> None:
        with self._lock:
            managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            manager.clear()

    def fingerprint(
        self, data: Mapping[str, Any], options: fp.FingerprintOptions, artifact: fp.ArtifactReader
    ) -> fp.Fingerprint:
        """Status, where the redirects ended, the content type and the body's sha256; the
        response headers a schedule names (`http_headers`); never timings."""
        headers = {k.lower(): v for k, v in (data.get("headers") or {}).items()}
        parts: dict[str, Any] = {
            name: data.get(name) for name in ("status_code", "final_url", "content_type")
        }
        parts["body_sha256"] = data.get("body_sha256")
        for name in options.http_headers:
            parts[f"header:{name}"] = headers.get(name)
        chosen = ",".join(options.http_headers)  # another choice of headers: a new baseline
        return fp.Fingerprint(f"http/1{';' + chosen if chosen else ''}", parts)

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        timeout: float = options["timeout"]
        deadline = time.monotonic() + timeout
        manager = self._manager(ctx.policy)
        headers = HTTPHeaderDict({"User-Agent": USER_AGENT, "Accept": "*/*"})
        for key, value in options["headers"].items():
            headers[key] = value  # replaces a default case-insensitively
        url = netguard.target_url(target)
        chain = _Chain(url, netguard.check_url(url), options["method"], headers)
        started = time.perf_counter()
        resp = self._follow(manager, chain, options, deadline, timeout)
        ttfb_s = time.perf_counter() - started
        body, truncated = _read_body(resp, options["max_body_bytes"], deadline, timeout)
        total_s = time.perf_counter() - started
        timing = {
            "connect_ms": round(chain.connect_s * 1000, 2),
            "ttfb_ms": round(ttfb_s * 1000, 2),
            "total_ms": round(total_s * 1000, 2),
        }
        result = _result(resp, chain, body, truncated, timing)
        if resp.status == 429 or resp.status >= 500:
            raise TransientResponse(
                f"{chain.url} answered {resp.status} {resp.reason or ''}".rstrip(),
                result,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            )
        return result

    def _follow(
        self,
        manager: _GuardedPoolManager,
        chain: _Chain,
        options: dict[str, Any],
        deadline: float,
        timeout: float,
    ) -> BaseHTTPResponse:
        """Send the request, then each redirect if they are followed: the last response,
        its body unread."""
        while True:
            resp = self._send(manager, chain.method, chain.parts, chain.headers, deadline, timeout)
            if isinstance(resp.connection, _GuardedConnection):
                chain.connect_s += resp.connection.pop_connect_seconds()
            location = resp.headers.get("Location")
            if not (options["follow_redirects"] and resp.status in REDIRECT_STATUSES and location):
                return resp
            _discard(resp)
            chain.redirect(resp.status, location, options["max_redirects"])

    @staticmethod
    def _send(
        manager: _GuardedPoolManager,
        method: str,
        parts: SplitResult,
        headers: HTTPHeaderDict,
        deadline: float,
        timeout: float,
    ) -> BaseHTTPResponse:
        """One request on a guarded connection; the body is left unread."""
        url = parts.geturl()
        left = _remaining(deadline, timeout)
        scheme, host, port = _origin(parts)
        try:
            pool = manager.connection_from_host(host, port, scheme)
            return pool.urlopen(
                method,
                _request_target(parts),
                headers=headers,
                timeout=urllib3.Timeout(connect=left, read=left),
                retries=False,  # retrying is the task's business (backoff, Retry-After)
                redirect=False,
                preload_content=False,
            )
        except CollectorError:
            raise  # from the guard, already the right error
        except Urllib3Timeout as exc:
            raise TargetTimeout(f"{url}: timed out ({timeout}s)") from exc
        except SSLError as exc:
            raise TlsError(f"{url}: TLS failed: {exc}") from exc
        except LocationValueError as exc:
            raise InvalidTarget(f"{url}: {exc}") from exc
        except (HTTPError, OSError) as exc:
            raise TargetConnectError(f"{url}: {exc}") from exc


@dataclass
class _Chain:
    """The request as its redirects are followed: where it goes, how, and where it went."""

    url: str
    parts: SplitResult
    method: str
    headers: HTTPHeaderDict
    redirects: list[dict[str, Any]] = field(default_factory=list)
    connect_s: float = 0.0

    def redirect(self, status: int, location: str, max_redirects: int) -> None:
        """Move on to `location` (checked by the network guard), as a redirect does."""
        if len(self.redirects) >= max_redirects:
            raise TooManyRedirects(f"more than {max_redirects} redirects from {self.url}")
        self.redirects.append({"status_code": status, "url": self.url})
        next_url = urljoin(self.url, location.strip()).split("#", 1)[0]
        try:
            next_parts = netguard.check_url(next_url)
        except InvalidTarget as exc:
            raise InvalidTarget(f"redirect from {self.url}: {exc.detail}") from exc
        if _origin(next_parts) != _origin(self.parts):
            for name in CROSS_ORIGIN_STRIP:
                self.headers.discard(name)
        if status == 303 and self.method != "HEAD":
            self.method = "GET"
        self.url, self.parts = next_url, next_parts


def _result(
    resp: BaseHTTPResponse,
    chain: _Chain,
    body: bytes,
    truncated: bool,
    timing: dict[str, float],
) -> Result:
    content_type = resp.headers.get("Content-Type")
    data = {
        "status_code": resp.status,
        "reason": resp.reason or "",
        "headers": {name: resp.headers[name] for name in resp.headers},  # repeats joined
        "http_version": resp.version_string,
        "final_url": chain.url,
        "redirects": chain.redirects,
        "body_size": len(body),
        "body_truncated": truncated,
        "body_sha256": None if chain.method == "HEAD" else hashlib.sha256(body).hexdigest(),
        "content_type": content_type,
        "timing": timing,
    }
    artifacts = []
    if body and chain.method != "HEAD":
        artifacts.append(Artifact("http.body", content_type or "application/octet-stream", body))
    return Result(data=data, artifacts=artifacts)


def _discard(resp: BaseHTTPResponse) -> None:
    """Release a redirect response: reuse its connection only if its body is small."""
    try:
        resp.read(REDIRECT_DRAIN_LIMIT)
        if resp.read(1):  # a big body is not worth reading just to keep the connection
            resp.close()
    except (HTTPError, OSError):
        resp.close()
    resp.release_conn()


def _read_body(
    resp: BaseHTTPResponse, limit: int, deadline: float, timeout: float
) -> tuple[bytes, bool]:
    """Read at most `limit` bytes before `deadline`; say whether the body was cut.

    read1() does at most one socket read, and the socket's timeout is lowered to
    what is left before each, so a server trickling bytes cannot outlast the deadline.
    """
    body = bytearray()
    clean = False
    try:
        while True:
            left = _remaining(deadline, timeout)
            conn = resp.connection
            if isinstance(conn, HTTPConnection) and conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = resp.read1(min(CHUNK, limit + 1 - len(body)))
            if not chunk:
                clean = True
                return bytes(body), False
            body += chunk
            if len(body) > limit:
                return bytes(body[:limit]), True  # unread bytes remain: not clean
    except Urllib3Timeout as exc:
        raise TargetTimeout(f"reading the body timed out ({timeout}s)") from exc
    except DecodeError as exc:
        raise InvalidTarget(f"the body could not be decoded: {exc}") from exc
    except (HTTPError, OSError) as exc:
        raise TargetConnectError(f"reading the body failed: {exc}") from exc
    finally:
        if not clean:
            resp.close()  # a connection with unread bytes (or an error) must not be reused
        resp.release_conn()
