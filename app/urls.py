"""URLs in the settings: their passwords, hidden wherever a URL is shown, and loopback hosts."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_host", "redact_url", "url_password"]

# Query parameters that carry a password in Redis/AMQP URLs (redis-py reads `password`).
_SECRET_PARAMS = frozenset({"password", "pass", "passwd", "pwd"})


def redact_url(url: str) -> str:
    """Hide every password of a URL or a `;`-separated failover list of URLs.

    `amqp://user:***@host/`; a lone userinfo (`redis://***@host`, which some clients take
    for a password); `password=`/`pass=` query parameters (`redis://h/0?password=***`,
    `unix:///s.sock?password=***`).
    """
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(text: str) -> str:
    url = text.lstrip()
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = "&".join(_redact_param(p) for p in parts.query.split("&")) if parts.query else ""
    if (netloc, query) == (parts.netloc, parts.query):
        return text  # nothing secret: exactly as given
    # Not urlunsplit: it drops the empty authority of `unix:///path`.
    head = f"{parts.scheme}://" if "://" in url else f"{parts.scheme}:" if parts.scheme else ""
    tail = (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return text[: len(text) - len(url)] + head + netloc + parts.path + tail


def _redact_param(param: str) -> str:
    key, eq, _ = param.partition("=")
    return f"{key}=***" if eq and key.strip().lower() in _SECRET_PARAMS else param


def url_password(url: str) -> str | None:
    """The password a Redis/AMQP URL carries (userinfo or query), or None."""
    parts = urlsplit(url.strip())
    if parts.password:
        return parts.password
    for param in parts.query.split("&"):
        key, eq, value = param.partition("=")
        if eq and value and key.strip().lower() in _SECRET_PARAMS:
            return value
    return None


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (what dev may bind open)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
