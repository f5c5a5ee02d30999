"""The client's HTTP: JSON requests to the public API, and server-sent events.

Only the standard library (urllib, http.client): the client runs wherever Python does.
Errors, all `ClientError`::

    ClientError
    ├── Unreachable   nothing answered at the URL (refused, DNS, timeout, TLS)
    └── ApiProblem    the API answered with an error: its problem+json (RFC 9457)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiClient",
    "ApiProblem",
    "ClientError",
    "Event",
    "Unreachable",
    "parse_events",
]

USER_AGENT = "collectq-client"


class ClientError(Exception):
    """A request did not give an answer the command can use."""

    exit_code = 3


class Unreachable(ClientError):
    exit_code = 4

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url


class ApiProblem(ClientError):
    """An error answer; `problem` is its problem+json body (or one made from the status)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(f"{status} {self.title}: {self.detail}")

    @property
    def title(self) -> str:
        return str(self.problem.get("title") or "error")

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or "")

    def field_errors(self) -> list[tuple[str, str]]:
        """(dotted field path, message) of a 422's ``errors``, in order."""
        out: list[tuple[str, str]] = []
        _flatten(self.problem.get("errors"), "", out)
        return out


def _flatten(node: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _flatten(value, f"{path}.{key}" if path else str(key), out)
    elif isinstance(node, list) and all(isinstance(m, str) for m in node):
        out.extend((path or "(request)", m) for m in node)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _flatten(value, f"{path}.{i}" if path else str(i), out)
    elif node is not None:
        out.append((path or "(request)", str(node)))


@dataclass
class Event:
    """One server-sent event (the WHATWG `text/event-stream` fields)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


def parse_events(lines: Iterator[bytes]) -> Iterator[Event]:
    """Events of a `text/event-stream` body, read line by line; comments (``:``) are
    keep-alives and dropped. An event without data is not dispatched (as browsers do)."""
    event, last_id, retry = "", None, None
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield Event(event or "message", "\n".join(data), last_id, retry)
            event, data, retry = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)


class ApiClient:
    """Requests to one collectq API with one API key (a Bearer token)."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._key = api_key

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self.base_url + path + ("?" + urllib.parse.urlencode(q) if q else "")

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> urllib.request.Request:
        hdrs = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if self._key:
            hdrs["Authorization"] = f"Bearer {self._key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        url = self.url(path, query)  # base_url is http(s): checked in clientconfig
        return urllib.request.Request(url, data, hdrs, method=method)  # noqa: S310

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON answer of one request; `ApiProblem` for an error status."""
        req = self._request(method, path, body, query, headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:  # noqa: S310 - http(s) only (clientconfig)
                raw = resp.read()
        except urllib.error.HTTPError as err:
            with err:  # closes its socket
                raise _problem(err.code, err.reason, err.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(self.base_url, _reason(exc)) from None
        return json.loads(raw) if raw else None

    def stream(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """Follow a server-sent event stream until the server closes it."""
        hdrs = {"Accept": "text/event-stream", **(headers or {})}
        req = self._request("GET", path, headers=hdrs)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout or self.timeout)  # noqa: S310 - http(s) only (clientconfig)
        except urllib.error.HTTPError as err:
            with err:
                raise _problem(err.code, err.reason, err.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(self.base_url, _reason(exc)) from None
        with resp:
            try:
                yield from parse_events(iter(resp.readline, b""))
            except OSError as exc:  # the connection broke mid-stream: the caller resumes
                raise Unreachable(self.base_url, _reason(exc)) from None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _problem(status: int, reason: str, body: bytes) -> ApiProblem:
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):  # not ours (a proxy's page): the status says it
        text = body.decode("utf-8", "replace").strip()[:200]
        problem = {"title": reason or f"HTTP {status}", "detail": text, "status": status}
    return ApiProblem(status, problem)
