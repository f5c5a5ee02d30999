"""One settings object for the API, the workers, beat and the CLI.

Read once (``load_settings``) from ``COLLECTQ_*`` environment variables; a
secret may come from ``COLLECTQ_<NAME>_FILE`` instead (Docker/K8s secrets).
Every bad variable is reported at once, by name. Profiles (``COLLECTQ_ENV``)
only change defaults; explicit variables always win.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from environs import EnvValidationError, FileAwareEnv
from limits import parse_many
from marshmallow.validate import OneOf, Range

from schemas.keys import ROUTE_CLASSES

__all__ = [
    "POOL_TYPES",
    "PROFILES",
    "ROUTE_CLASSES",
    "ConfigError",
    "PoolSettings",
    "Settings",
    "is_loopback_host",
    "load_settings",
    "redact_url",
]

PROFILES = ("dev", "test", "staging", "prod")
LOOPBACK = ["127.0.0.0/8", "::1/128"]
HARDENED = ("staging", "prod")
_RATE_DEFAULTS = {"submit": "120/minute", "read": "1200/minute", "admin": "60/minute"}
# Values that are published defaults somewhere (ours, compose files, tutorials): never secrets.
_DEFAULT_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "admin", "guest", "dev",
     "default", "collectq", "test", "example", "insecure"}
)  # fmt: skip
MIN_SECRET_LENGTH = 16
_CORS_HEADERS = ["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID"]

# Defaults that differ per profile. Anything not here has one default for all.
_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "redis_url": "redis://127.0.0.1:6379/0",
        "broker_url": "amqp://guest:guest@127.0.0.1:5672//",
        "net_allow": LOOPBACK,
        "log_json": False,
    },
    "test": {
        "redis_url": "redis://127.0.0.1:6379/0",
        "broker_url": "amqp://guest:guest@127.0.0.1:5672//",
        "net_allow": [],
        "log_json": False,
    },
    "staging": {"redis_url": None, "broker_url": None, "net_allow": [], "log_json": True},
    "prod": {"redis_url": None, "broker_url": None, "net_allow": [], "log_json": True},
}


POOL_TYPES = ("threads", "prefork", "solo")


@dataclass(frozen=True)
class PoolSettings:
    """How the worker of one collector's queue runs (``COLLECTQ_POOL_<NAME>``)."""

    pool: str
    concurrency: int
    prefetch: int
    soft_time_limit: int
    hard_time_limit: int


# I/O-bound collectors wait on the network: many threads, a few messages prefetched.
# A browser page is heavy (CPU, ~100 MB): few processes, one message at a time.
_POOL_DEFAULTS: dict[str, PoolSettings] = {
    "http": PoolSettings("threads", 32, 4, 60, 90),
    "dns": PoolSettings("threads", 32, 4, 60, 90),
    "tls": PoolSettings("threads", 32, 4, 60, 90),
    "screenshot": PoolSettings("prefork", 2, 1, 60, 90),
}
_POOL_ENV = "COLLECTQ_POOL_"


class ConfigError(Exception):
    """Invalid configuration; `errors` maps each variable name to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        lines = [f"{name}: {'; '.join(msgs)}" for name, msgs in sorted(errors.items())]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


def _secret() -> Any:
    return field(default=None, repr=False, metadata={"secret": True})


@dataclass(frozen=True)
class Settings:
    env: str = "dev"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    redis_prefix: str = "cq:"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    api_threads: int = 8
    max_body_bytes: int = 1024 * 1024
    publish_timeout: float = 5.0
    job_ttl: int = 7 * 24 * 3600
    max_wait: int = 30
    net_allow: tuple[str, ...] = ()
    max_retries: int = 3
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 60.0
    soft_time_limit: int = 60
    hard_time_limit: int = 90
    worker_concurrency: int = 16
    worker_pool: str = "threads"
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    reap_interval: float = 30.0
    reap_queued_after: float = 300.0
    reap_max_requeues: int = 3
    max_redeliveries: int = 3
    job_deadline: int = 24 * 3600
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 30.0
    host_concurrency: int = 0
    soft_shutdown_timeout: float = 30.0
    broker_heartbeat: float = 60.0
    artifact_budget_bytes: int = 1024**3
    log_level: str = "INFO"
    log_json: bool = False
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False
    cors_methods: tuple[str, ...] = ("GET", "POST", "DELETE")
    cors_headers: tuple[str, ...] = tuple(_CORS_HEADERS)
    cors_max_age: int = 600
    plugins: tuple[str, ...] = ()
    debug: bool = False
    auth: bool = True
    key_rotation_overlap: int = 24 * 3600
    key_last_used_interval: int = 60
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_scopes_claim: str = "scope"
    jwt_leeway: int = 30
    trusted_proxies: int = 0
    rate_limit_enabled: bool = True
    rate_limit_submit: str = _RATE_DEFAULTS["submit"]
    rate_limit_read: str = _RATE_DEFAULTS["read"]
    rate_limit_admin: str = _RATE_DEFAULTS["admin"]
    max_queued_jobs: int = 1000
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    chromium_path: str = "/usr/bin/chromium"
    pools: Mapping[str, PoolSettings] = field(default_factory=lambda: MappingProxyType({}))
    secret_key: str | None = _secret()
    sentry_dsn: str | None = _secret()
    jwt_keys: str | None = _secret()
    flower_basic_auth: str | None = _secret()

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    def rate_limit(self, route_class: str) -> str:
        """The default limit of a route class (`submit`, `read`, `admin`)."""
        limit: str = getattr(self, f"rate_limit_{route_class}")
        return limit

    def pool_for(self, collector: str) -> PoolSettings:
        """The worker settings of `collector`: its override, else its built-in default.

        Collectors without either (plugins) get the global COLLECTQ_WORKER_* values.
        """
        if collector in self.pools:
            return self.pools[collector]
        return _POOL_DEFAULTS.get(collector) or PoolSettings(
            self.worker_pool, self.worker_concurrency, 1, self.soft_time_limit, self.hard_time_limit
        )

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = "***" if value else None
            elif f.name.endswith("_url") and isinstance(value, str):
                value = redact_url(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif f.name == "pools":
                names = sorted({*_POOL_DEFAULTS, *value})
                value = {n: dataclasses.asdict(self.pool_for(n)) for n in names}
            out[f"COLLECTQ_{f.name.upper()}"] = value
        return out


def redact_url(url: str) -> str:
    """Hide the password of a URL (`amqp://user:***@host/`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(**overrides: Any) -> Settings:
    """Read and validate ``COLLECTQ_*`` variables; raise ConfigError naming each bad one.

    `overrides` (field name → value) win over the environment; tests use them.
    """
    env = FileAwareEnv(eager=False, prefix="COLLECTQ_")
    profile = env.str("ENV", "dev", validate=OneOf(PROFILES))
    defaults = {**_PROFILE_DEFAULTS.get(profile, _PROFILE_DEFAULTS["dev"])}
    pos = Range(min=1)
    values: dict[str, Any] = {
        "env": profile,
        "redis_url": env.str("REDIS_URL", defaults["redis_url"]),
        "broker_url": env.str("BROKER_URL", defaults["broker_url"]),
        "redis_prefix": env.str("REDIS_PREFIX", "cq:"),
        "api_host": env.str("API_HOST", "127.0.0.1"),
        "api_port": env.int("API_PORT", 8000, validate=Range(min=1, max=65535)),
        "api_workers": env.int("API_WORKERS", 2, validate=pos),
        "api_threads": env.int("API_THREADS", 8, validate=pos),
        "max_body_bytes": env.int("MAX_BODY_BYTES", 1024 * 1024, validate=Range(min=1024)),
        "publish_timeout": env.float("PUBLISH_TIMEOUT", 5.0, validate=Range(min=0.1, max=60)),
        "job_ttl": env.int("JOB_TTL", 7 * 24 * 3600, validate=Range(min=60)),
        "max_wait": env.int("MAX_WAIT", 30, validate=Range(min=0, max=300)),
        "net_allow": tuple(env.list("NET_ALLOW", defaults["net_allow"])),
        "max_retries": env.int("MAX_RETRIES", 3, validate=Range(min=0, max=20)),
        "retry_backoff_base": env.float("RETRY_BACKOFF_BASE", 1.0, validate=Range(min=0)),
        "retry_backoff_max": env.float("RETRY_BACKOFF_MAX", 60.0, validate=Range(min=0)),
        "soft_time_limit": env.int("SOFT_TIME_LIMIT", 60, validate=pos),
        "hard_time_limit": env.int("HARD_TIME_LIMIT", 90, validate=pos),
        "worker_concurrency": env.int("WORKER_CONCURRENCY", 16, validate=pos),
        "worker_pool": env.str(
            "WORKER_POOL", "threads", validate=OneOf(["threads", "prefork", "solo"])
        ),
        "heartbeat_interval": env.float(
            "HEARTBEAT_INTERVAL", 10.0, validate=Range(min=0.1, max=300)
        ),
        "heartbeat_timeout": env.float("HEARTBEAT_TIMEOUT", 30.0, validate=Range(min=0.3)),
        "reap_interval": env.float("REAP_INTERVAL", 30.0, validate=Range(min=0.5)),
        "reap_queued_after": env.float("REAP_QUEUED_AFTER", 300.0, validate=Range(min=1)),
        "reap_max_requeues": env.int("REAP_MAX_REQUEUES", 3, validate=Range(min=0, max=100)),
        "max_redeliveries": env.int("MAX_REDELIVERIES", 3, validate=Range(min=0, max=100)),
        "job_deadline": env.int("JOB_DEADLINE", 24 * 3600, validate=Range(min=10)),
        "breaker_fail_max": env.int("BREAKER_FAIL_MAX", 5, validate=Range(min=0)),
        "breaker_reset_timeout": env.float("BREAKER_RESET_TIMEOUT", 30.0, validate=Range(min=1)),
        "host_concurrency": env.int("HOST_CONCURRENCY", 0, validate=Range(min=0)),
        "soft_shutdown_timeout": env.float(
            "SOFT_SHUTDOWN_TIMEOUT", 30.0, validate=Range(min=0, max=3600)
        ),
        "artifact_budget_bytes": env.int("ARTIFACT_BUDGET_BYTES", 1024**3, validate=Range(min=0)),
        "broker_heartbeat": env.float("BROKER_HEARTBEAT", 60.0, validate=Range(min=0, max=600)),
        "log_level": env.str(
            "LOG_LEVEL", "INFO", validate=OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])
        ),
        "log_json": env.bool("LOG_JSON", defaults["log_json"]),
        "cors_origins": tuple(env.list("CORS_ORIGINS", [])),
        "cors_credentials": env.bool("CORS_CREDENTIALS", False),
        "cors_methods": tuple(env.list("CORS_METHODS", ["GET", "POST", "DELETE"])),
        "cors_headers": tuple(env.list("CORS_HEADERS", _CORS_HEADERS)),
        "cors_max_age": env.int("CORS_MAX_AGE", 600, validate=Range(min=0, max=86400)),
        "plugins": tuple(env.list("PLUGINS", [])),
        "debug": env.bool("DEBUG", False),
        "auth": env.str("AUTH", "on", validate=OneOf(["on", "off"])) == "on",
        "key_rotation_overlap": env.int(
            "KEY_ROTATION_OVERLAP", 24 * 3600, validate=Range(min=0, max=90 * 86400)
        ),
        "key_last_used_interval": env.int("KEY_LAST_USED_INTERVAL", 60, validate=Range(min=0)),
        "jwt_issuer": env.str("JWT_ISSUER", None),
        "jwt_audience": env.str("JWT_AUDIENCE", None),
        "jwt_scopes_claim": env.str("JWT_SCOPES_CLAIM", "scope"),
        "jwt_leeway": env.int("JWT_LEEWAY", 30, validate=Range(min=0, max=300)),
        "trusted_proxies": env.int("TRUSTED_PROXIES", 0, validate=Range(min=0, max=10)),
        "rate_limit_enabled": env.bool("RATE_LIMIT_ENABLED", True),
        **{
            f"rate_limit_{rc}": env.str(f"RATE_LIMIT_{rc.upper()}", _RATE_DEFAULTS[rc])
            for rc in ROUTE_CLASSES
        },
        "max_queued_jobs": env.int("MAX_QUEUED_JOBS", 1000, validate=Range(min=0)),
        "flower_host": env.str("FLOWER_HOST", "127.0.0.1"),
        "flower_port": env.int("FLOWER_PORT", 5555, validate=Range(min=1, max=65535)),
        "chromium_path": env.str("CHROMIUM_PATH", "/usr/bin/chromium"),
        "secret_key": env.str("SECRET_KEY", None),
        "sentry_dsn": env.str("SENTRY_DSN", None),
        "jwt_keys": env.str("JWT_KEYS", None),
        "flower_basic_auth": env.str("FLOWER_BASIC_AUTH", None),
    }
    errors: dict[str, list[str]] = {}
    try:
        env.seal()
    except EnvValidationError as exc:
        messages = exc.error_messages  # per variable, names already prefixed
        if isinstance(messages, dict):
            errors.update({name: [str(m) for m in msgs] for name, msgs in messages.items()})
    pools, pool_errors = _read_pools(values)
    values["pools"] = MappingProxyType(pools)
    errors.update(pool_errors)
    values.update(overrides)
    errors.update(_check(values))
    if errors:
        raise ConfigError(errors)
    return Settings(**values)


def _read_pools(values: dict[str, Any]) -> tuple[dict[str, PoolSettings], dict[str, list[str]]]:
    """``COLLECTQ_POOL_<NAME>=pool=prefork,concurrency=2,...`` over the collector's defaults.

    Keys left out keep the default; every bad key or value is reported by variable name.
    """
    pools: dict[str, PoolSettings] = {}
    errors: dict[str, list[str]] = {}
    base = Settings(**{k: v for k, v in values.items() if k != "pools"})
    for var in sorted(k for k in os.environ if k.startswith(_POOL_ENV)):
        name = var.removeprefix(_POOL_ENV).lower()
        merged: dict[str, Any] = dataclasses.asdict(base.pool_for(name))
        problems: list[str] = []
        for item in filter(None, (p.strip() for p in os.environ[var].split(","))):
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or key not in merged:
                problems.append(f"{item!r}: expected key=value with key in {', '.join(merged)}")
            elif key == "pool":
                if raw not in POOL_TYPES:
                    problems.append(f"pool must be one of {', '.join(POOL_TYPES)}")
                merged[key] = raw
            elif not raw.isdigit() or int(raw) < 1:
                problems.append(f"{key} must be a positive integer")
            else:
                merged[key] = int(raw)
        if merged["hard_time_limit"] <= merged["soft_time_limit"]:
            problems.append("hard_time_limit must be greater than soft_time_limit")
        if problems:
            errors[var] = problems
        else:
            pools[name] = PoolSettings(**merged)
    return pools, errors


def _check(values: dict[str, Any]) -> dict[str, list[str]]:
    """Cross-field rules that a single parser cannot express."""
    errors: dict[str, list[str]] = {}

    def bad(name: str, msg: str) -> None:
        errors.setdefault(f"COLLECTQ_{name.upper()}", []).append(msg)

    for name, schemes in (
        ("redis_url", ("redis", "rediss", "unix")),
        ("broker_url", ("amqp", "amqps", "pyamqp", "redis", "rediss")),
    ):
        url = values.get(name)
        if not url:
            bad(name, f"required in the {values['env']} profile")
        elif urlsplit(url).scheme not in schemes:
            bad(name, f"scheme must be one of {', '.join(schemes)}")
    for cidr in values.get("net_allow") or ():
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            bad("net_allow", f"{cidr!r} is not an IP network")
    if values["hard_time_limit"] <= values["soft_time_limit"]:
        bad("hard_time_limit", "must be greater than COLLECTQ_SOFT_TIME_LIMIT")
    if values["heartbeat_timeout"] < 2 * values["heartbeat_interval"]:
        bad("heartbeat_timeout", "must be at least twice COLLECTQ_HEARTBEAT_INTERVAL")
    if values["job_deadline"] > values["job_ttl"]:
        bad("job_deadline", "must not exceed COLLECTQ_JOB_TTL")
    if values["retry_backoff_max"] < values["retry_backoff_base"]:
        bad("retry_backoff_max", "must be at least COLLECTQ_RETRY_BACKOFF_BASE")
    for rc in ROUTE_CLASSES:
        try:
            parse_many(values[f"rate_limit_{rc}"])
        except ValueError:
            bad(f"rate_limit_{rc}", "not a rate limit (e.g. 100/minute; 10/second)")
    if values["cors_credentials"] and "*" in values["cors_origins"]:
        bad("cors_origins", "a wildcard origin cannot be combined with COLLECTQ_CORS_CREDENTIALS")
    if not values["auth"]:
        if values["env"] != "dev":
            bad("auth", "auth can only be off in the dev profile")
        elif not is_loopback_host(values["api_host"]):
            bad("auth", "auth can only be off with a loopback COLLECTQ_API_HOST")
    if values.get("jwt_keys"):
        from app.auth.jwtauth import KeySetError, parse_key_set  # cryptography: load only when used

        try:
            parse_key_set(values["jwt_keys"])
        except KeySetError as exc:
            bad("jwt_keys", str(exc))
        for name in ("jwt_issuer", "jwt_audience"):
            if not values.get(name):
                bad(name, "required when COLLECTQ_JWT_KEYS is set")
    if values["env"] in HARDENED:
        _check_hardened(values, bad)
    return errors


def _check_hardened(values: dict[str, Any], bad: Any) -> None:
    """What staging and prod refuse: anything open, default or debug."""
    env = values["env"]
    if "*" in values["cors_origins"]:
        bad("cors_origins", "wildcard origin is not allowed in this profile")
    if values["debug"]:
        bad("debug", f"debug must be off in the {env} profile")
    secret = values.get("secret_key")
    if not secret:
        bad("secret_key", f"required in the {env} profile")
    elif _is_default_secret(secret):
        bad("secret_key", f"a default or short value (< {MIN_SECRET_LENGTH} chars) is not allowed")
    broker = urlsplit(values.get("broker_url") or "")
    if broker.username == "guest" or (broker.scheme.startswith("amqp") and not broker.password):
        bad("broker_url", "guest or missing broker credentials are not allowed in this profile")
    elif broker.password and _is_default_secret(broker.password):
        bad("broker_url", "the broker password is a default or short value")
    redis = urlsplit(values.get("redis_url") or "")
    if redis.password and _is_default_secret(redis.password):
        bad("redis_url", "the Redis password is a default or short value")
    if values.get("flower_basic_auth"):
        for pair in str(values["flower_basic_auth"]).split(","):
            user, _, password = pair.partition(":")
            if not user or _is_default_secret(password):
                bad("flower_basic_auth", "use user:password pairs with non-default passwords")
                break


def _is_default_secret(value: str) -> bool:
    return value.strip().lower() in _DEFAULT_SECRETS or len(value) < MIN_SECRET_LENGTH


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (what dev may bind open)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
