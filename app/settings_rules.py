"""Rules over several settings, and what the hardened profiles (staging, prod) refuse.

Each rule names the settings it reads (`RULES`, `HARDENED_RULES`); `app.settings` skips
a rule when one of them is already invalid (its message would be about a value nobody
chose). Every refusal names the variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from app.urls import is_loopback_host, url_password

__all__ = ["EXPLICIT_ENV", "HARDENED_RULES", "MIN_SECRET_LENGTH", "RULES", "Bad"]

EXPLICIT_ENV = "_env_explicit"  # in the values the rules see: COLLECTQ_ENV was set
# Values that are published defaults somewhere (ours, compose files, tutorials): never secrets.
_DEFAULT_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "admin", "guest", "dev",
     "default", "collectq", "test", "example", "insecure"}
)  # fmt: skip
MIN_SECRET_LENGTH = 16

# Rules over several settings. Each names the settings it reads, and is skipped when one
# of them is already invalid (its message would be about a value nobody chose).
Bad = Callable[[str, str], None]
Rule = Callable[[Mapping[str, Any], Bad], None]


def _time_limits(v: Mapping[str, Any], bad: Bad) -> None:
    if v["hard_time_limit"] <= v["soft_time_limit"]:
        bad("hard_time_limit", "must be greater than COLLECTQ_SOFT_TIME_LIMIT")


def _heartbeat(v: Mapping[str, Any], bad: Bad) -> None:
    if v["heartbeat_timeout"] < 2 * v["heartbeat_interval"]:
        bad("heartbeat_timeout", "must be at least twice COLLECTQ_HEARTBEAT_INTERVAL")


def _deadline(v: Mapping[str, Any], bad: Bad) -> None:
    if v["job_deadline"] > v["job_ttl"]:
        bad("job_deadline", "must not exceed COLLECTQ_JOB_TTL")


def _backoff(v: Mapping[str, Any], bad: Bad) -> None:
    if v["retry_backoff_max"] < v["retry_backoff_base"]:
        bad("retry_backoff_max", "must be at least COLLECTQ_RETRY_BACKOFF_BASE")


def _cors_credentials(v: Mapping[str, Any], bad: Bad) -> None:
    if v["cors_credentials"] and "*" in v["cors_origins"]:
        bad("cors_origins", "a wildcard origin cannot be combined with COLLECTQ_CORS_CREDENTIALS")


def _auth_off(v: Mapping[str, Any], bad: Bad) -> None:
    if v["auth"]:
        return
    if v["env"] != "dev" or not v[EXPLICIT_ENV]:
        bad("auth", "auth can only be off in the dev profile, set explicitly (COLLECTQ_ENV=dev)")
    elif not is_loopback_host(v["api_host"]):
        bad("auth", "auth can only be off with a loopback COLLECTQ_API_HOST")


def _jwt(v: Mapping[str, Any], bad: Bad) -> None:
    if not v["jwt_keys"]:
        return
    from app.jwks import KeySetError, parse_key_set  # cryptography: load only when used

    try:
        parse_key_set(v["jwt_keys"])
    except KeySetError as exc:
        bad("jwt_keys", str(exc))
    for name in ("jwt_issuer", "jwt_audience"):
        if not v[name]:
            bad(name, "required when COLLECTQ_JWT_KEYS is set")


# What staging and prod refuse: anything open, default or debug.
def _no_wildcard_origin(v: Mapping[str, Any], bad: Bad) -> None:
    if "*" in v["cors_origins"]:
        bad("cors_origins", "wildcard origin is not allowed in this profile")


def _no_debug(v: Mapping[str, Any], bad: Bad) -> None:
    if v["debug"]:
        bad("debug", f"debug must be off in the {v['env']} profile")


def _strong_secret_key(v: Mapping[str, Any], bad: Bad) -> None:
    if v["secret_key"] and _is_default_secret(v["secret_key"]):
        bad("secret_key", f"a default or short value (< {MIN_SECRET_LENGTH} chars) is not allowed")


def _broker_credentials(v: Mapping[str, Any], bad: Bad) -> None:
    """Every URL of a failover list (`amqp://…;amqp://…`) needs its own good password."""
    for n, url in enumerate(u for u in (v["broker_url"] or "").split(";") if u.strip()):
        which = f"URL {n + 1} of the list: " if ";" in v["broker_url"] else ""
        password = url_password(url)
        if urlsplit(url.strip()).username == "guest" or password is None:
            bad("broker_url", f"{which}guest or missing broker credentials are not allowed in "
                "this profile")  # fmt: skip
        elif _is_default_secret(password):
            bad("broker_url", f"{which}the broker password is a default or short value")


def _redis_password(v: Mapping[str, Any], bad: Bad) -> None:
    password = url_password(v["redis_url"] or "")
    if password is None:
        if not v["allow_unauthenticated_redis"]:
            bad("redis_url", "a Redis without a password is not allowed in this profile; give "
                "it one, or set COLLECTQ_ALLOW_UNAUTHENTICATED_REDIS=true")  # fmt: skip
    elif _is_default_secret(password):
        bad("redis_url", "the Redis password is a default or short value")


# Address blocks that are not global unicast (IANA special-purpose registries).
_NON_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
              "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
              "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
              "240.0.0.0/4", "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48",
              "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8")
)  # fmt: skip


def _opens_non_global(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr.strip(), strict=False)
    return not net.is_global or any(
        net.version == special.version and net.overlaps(special) for special in _NON_GLOBAL
    )


def _net_allow_private(v: Mapping[str, Any], bad: Bad) -> None:
    opened = [c for c in v["net_allow"] if c.strip() and _opens_non_global(c)]
    if opened and not v["net_allow_private"]:
        bad("net_allow", f"{', '.join(opened)} opens loopback/private/non-global addresses to "
            "collectors; set COLLECTQ_NET_ALLOW_PRIVATE=true to acknowledge it")  # fmt: skip


def _rate_limited(v: Mapping[str, Any], bad: Bad) -> None:
    if not v["rate_limit_enabled"] and not v["allow_no_rate_limit"]:
        bad("rate_limit_enabled", "rate limiting cannot be off in this profile; set "
            "COLLECTQ_ALLOW_NO_RATE_LIMIT=true when a gateway limits instead")  # fmt: skip


def _queued_cap(v: Mapping[str, Any], bad: Bad) -> None:
    if v["max_queued_jobs"] == 0:
        bad("max_queued_jobs", "no cap (0) is not allowed in this profile; set a cap")


def _flower_passwords(v: Mapping[str, Any], bad: Bad) -> None:
    pairs = (pair.partition(":") for pair in (v["flower_basic_auth"] or "").split(",") if pair)
    if any(not user or _is_default_secret(password) for user, _, password in pairs):
        bad("flower_basic_auth", "use user:password pairs with non-default passwords")


RULES: tuple[tuple[tuple[str, ...], Rule], ...] = (
    (("soft_time_limit", "hard_time_limit"), _time_limits),
    (("heartbeat_interval", "heartbeat_timeout"), _heartbeat),
    (("job_deadline", "job_ttl"), _deadline),
    (("retry_backoff_base", "retry_backoff_max"), _backoff),
    (("cors_credentials", "cors_origins"), _cors_credentials),
    (("auth", "env", "api_host"), _auth_off),
    (("jwt_keys", "jwt_issuer", "jwt_audience"), _jwt),
)
HARDENED_RULES: tuple[tuple[tuple[str, ...], Rule], ...] = (
    (("cors_origins",), _no_wildcard_origin),
    (("debug",), _no_debug),
    (("secret_key",), _strong_secret_key),
    (("broker_url",), _broker_credentials),
    (("redis_url", "allow_unauthenticated_redis"), _redis_password),
    (("net_allow", "net_allow_private"), _net_allow_private),
    (("rate_limit_enabled", "allow_no_rate_limit"), _rate_limited),
    (("max_queued_jobs",), _queued_cap),
    (("flower_basic_auth",), _flower_passwords),
)


def _is_default_secret(value: str) -> bool:
    return value.strip().lower() in _DEFAULT_SECRETS or len(value) < MIN_SECRET_LENGTH
