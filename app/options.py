"""Every setting, declared once: name, type, default (per profile), secret, validation, help.

`Options` is the table, after Celery's ``app/defaults.py``: one field per setting, its
type the annotation, the rest in `option(...)`. The loader, the Settings object, `config
check` and the README's table (`settings_table_markdown`) are all derived from it.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from limits import parse_many
from marshmallow import ValidationError
from marshmallow.validate import OneOf, Range

__all__ = [
    "HARDENED",
    "POLICY_DEFAULTS",
    "POLICY_GLOBALS",
    "POLICY_REASONS",
    "POOL_DEFAULTS",
    "POOL_TYPES",
    "PREFIX",
    "PROFILES",
    "Option",
    "CollectorPolicy",
    "Options",
    "PoolSettings",
    "Setting",
    "declared",
    "env_text",
    "option",
]

PREFIX = "COLLECTQ_"
PROFILES = ("dev", "test", "staging", "prod")
HARDENED = ("staging", "prod")
LOOPBACK = ("127.0.0.0/8", "::1/128")
POOL_TYPES = ("threads", "prefork", "solo")

T = TypeVar("T")
Check = Callable[[Any], None]


@dataclass(frozen=True)
class Option:
    """How one setting is read, checked and documented (the metadata of its field)."""

    help: str
    default: Any = None
    profiles: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    secret: bool = False
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    required: tuple[str, ...] = ()  # profiles in which an empty value is refused
    kind: str | None = None  # parser, when the field's type does not say it
    # the profile defaults apply only when COLLECTQ_ENV names the profile (else `default`)
    explicit_profile: bool = False
    var: str | None = None  # variable name without the prefix, when not NAME
    doc_default: str | None = None
    check: Check | None = None

    def default_in(self, profile: str) -> Any:
        return self.profiles.get(profile, self.default)

    def validators(self) -> list[Check]:
        checks: list[Check] = []
        if self.min is not None or self.max is not None:
            checks.append(Range(min=self.min, max=self.max))
        if self.choices:
            checks.append(OneOf(self.choices))
        if self.check is not None:
            checks.append(self.check)
        return checks


def option(
    default: T,
    help: str,
    *,
    profiles: Mapping[str, Any] | None = None,
    secret: bool = False,
    choices: tuple[str, ...] = (),
    min: float | None = None,
    max: float | None = None,
    required: tuple[str, ...] = (),
    kind: str | None = None,
    check: Check | None = None,
    explicit_profile: bool = False,
) -> T:
    """Declare a setting: a dataclass field whose metadata is its `Option`."""
    opt = Option(
        help=help,
        default=default,
        profiles=MappingProxyType(dict(profiles or {})),
        secret=secret,
        choices=choices,
        min=min,
        max=max,
        required=required,
        kind=kind,
        check=check,
        explicit_profile=explicit_profile,
    )
    return field(default=default, repr=not secret, metadata={"option": opt})


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
POOL_DEFAULTS: Mapping[str, PoolSettings] = MappingProxyType(
    {
        "http": PoolSettings("threads", 32, 4, 60, 90),
        "dns": PoolSettings("threads", 32, 4, 60, 90),
        "tls": PoolSettings("threads", 32, 4, 60, 90),
        "screenshot": PoolSettings("prefork", 2, 1, 60, 90),
    }
)


@dataclass(frozen=True)
class CollectorPolicy:
    """How one collector's calls are retried and guarded (``COLLECTQ_POLICY_<NAME>``).

    A job may narrow `retries` (``options.<collector>.retries``), never raise it."""

    retries: int  # retries of a transient failure (the first try not counted)
    backoff_base: float  # first retry delay, seconds (exponential, full jitter)
    backoff_max: float  # longest retry delay, seconds; Retry-After honoured up to it
    breaker_fail_max: int  # consecutive transient failures that open an origin's breaker
    breaker_reset_timeout: float  # seconds open before one probe call may pass
    host_concurrency: int  # calls in flight per target host across all workers; 0: no cap


# Each field's global setting: its value for plugin collectors, and, when set explicitly,
# for every collector (a POLICY_<NAME> key still wins for its collector).
POLICY_GLOBALS: Mapping[str, str] = MappingProxyType(
    {
        "retries": "max_retries",
        "backoff_base": "retry_backoff_base",
        "backoff_max": "retry_backoff_max",
        "breaker_fail_max": "breaker_fail_max",
        "breaker_reset_timeout": "breaker_reset_timeout",
        "host_concurrency": "host_concurrency",
    }
)

# The built-in collectors' policies and why (README "Collector policies" prints both).
POLICY_DEFAULTS: Mapping[str, CollectorPolicy] = MappingProxyType(
    {
        "http": CollectorPolicy(3, 1.0, 60.0, 5, 30.0, 0),
        "dns": CollectorPolicy(5, 0.2, 5.0, 10, 15.0, 0),
        "tls": CollectorPolicy(3, 1.0, 30.0, 5, 30.0, 4),
        "screenshot": CollectorPolicy(1, 5.0, 60.0, 3, 60.0, 2),
    }
)
POLICY_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "http": "the global defaults: a refused connection or a 503 often clears within a "
        "minute; no per-host cap, so a fan-out to one server is as wide as the pool",
        "dns": "a lookup is cheap and resolvers drop UDP now and then: more retries, sooner "
        "(0.2 s, at most 5 s); a name's breaker opens after 10 failures and tries again soon",
        "tls": "a handshake costs the server CPU: at most 4 at once per host, so forty jobs to "
        "one host do not look like an attack; otherwise as http",
        "screenshot": "a page costs a browser (~100 MB, seconds of CPU), and one that timed out "
        "rarely loads on the next try: one retry, later (5 s); 2 pages per host at once; its "
        "breaker opens after 3 failures for a minute",
    }
)


def _schemes(*schemes: str) -> Check:
    def check(url: str) -> None:
        if urlsplit(url).scheme not in schemes:
            raise ValidationError(f"scheme must be one of {', '.join(schemes)}")

    return check


def _http_url(value: str | None) -> None:
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise ValidationError("must be an http(s) URL with a host")


def _networks(cidrs: tuple[str, ...]) -> None:
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValidationError(f"{cidr!r} is not an IP network") from None


def _ip_address(value: str | None) -> None:
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValidationError(f"{value!r} is not an IP address") from None


def _rate_limit(value: str) -> None:
    try:
        parse_many(value)
    except ValueError:
        raise ValidationError("not a rate limit (e.g. 100/minute; 10/second)") from None


_REDIS = _schemes("redis", "rediss", "unix")
_BROKER = _schemes("amqp", "amqps", "pyamqp", "redis", "rediss")
_NOT_IN_PROD = {"staging": None, "prod": None}
_CORS_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID")


def _family_option(kind: str, var: str, help: str) -> Any:
    """A family of variables, one per collector (`POOL_<NAME>`), read by the loader."""
    opt = Option(help, MappingProxyType({}), kind=kind, var=var, doc_default="see below")
    return field(default_factory=lambda: MappingProxyType({}), metadata={"option": opt})


@dataclass(frozen=True)
class Options:
    """The settings table; `app.settings.Settings` adds behaviour, never fields."""

    env: str = option("dev", "profile (changes defaults only)", choices=PROFILES)
    redis_url: str = option(
        "redis://127.0.0.1:6379/0",
        "job store",
        profiles=_NOT_IN_PROD,
        required=PROFILES,
        check=_REDIS,
    )
    allow_unauthenticated_redis: bool = option(
        False, "staging/prod: allow a `REDIS_URL` without a password (refused without it)"
    )
    broker_url: str = option(
        "amqp://guest:guest@127.0.0.1:5672//",
        "Celery broker (RabbitMQ in production)",
        profiles=_NOT_IN_PROD,
        required=PROFILES,
        check=_BROKER,
    )
    redis_prefix: str = option("cq:", "key prefix (several deployments can share a Redis)")
    api_host: str = option("127.0.0.1", "address `collectq api`/`up` listen on")
    api_port: int = option(8000, "port `collectq api`/`up` listen on", min=1, max=65535)
    api_workers: int = option(2, "gunicorn worker processes", min=1)
    api_worker_class: str = option(
        "gevent",
        "gunicorn worker class: `gevent` (a waiting client — `?wait=`, an event stream — "
        "holds a greenlet, not a thread) or `gthread` (each request holds one of "
        "`API_THREADS`)",
        choices=("gevent", "gthread"),
    )
    api_threads: int = option(8, "threads per gunicorn worker (`API_WORKER_CLASS=gthread`)", min=1)
    api_connections: int = option(
        1000,
        "concurrent connections per gunicorn worker (`API_WORKER_CLASS=gevent`): requests, "
        "long-polls and event streams together",
        min=10,
    )
    max_body_bytes: int = option(1024 * 1024, "request body limit (413 above)", min=1024)
    publish_timeout: float = option(
        5.0, "seconds the API waits for the broker's confirm before answering 503", min=0.1, max=60
    )
    job_ttl: int = option(
        7 * 24 * 3600,
        "seconds a finished job and its artifacts are kept (then they expire; listings skip them)",
        min=60,
    )
    job_deadline: int = option(
        24 * 3600,
        "a job not finished after this many seconds becomes `expired` (≤ `JOB_TTL`)",
        min=10,
    )
    artifact_budget_bytes: int = option(
        1024**3,
        "artifact bytes kept per owner; the owner's oldest are evicted to fit a new one, one "
        "larger than the budget is dropped (`dropped` in the envelope); `0` = no budget",
        min=0,
    )
    change_history_max: int = option(
        100, "change records kept per schedule (`GET /v1/schedules/{id}/changes`)", min=1, max=10000
    )
    change_history_max_age: int = option(
        30 * 24 * 3600,
        "seconds a schedule's change record is kept; also how long its last fingerprints "
        "outlive its last run (a schedule idle longer starts from a new baseline)",
        min=60,
    )
    max_wait: int = option(
        30, "cap of `?wait=` (`GET` and `POST /v1/jobs`) in seconds", min=0, max=300
    )
    max_waits_per_client: int = option(
        16,
        "concurrent waiting requests — `?wait=` long-polls and event streams — per client "
        "(API key / JWT subject) across all API processes; more answer 429 with `Retry-After` "
        "(`0` = no cap)",
        min=0,
    )
    event_keepalive: float = option(
        15.0,
        "seconds of silence after which an event stream sends a keep-alive comment",
        min=1,
        max=300,
    )
    event_stream_max: int = option(
        600,
        "seconds an event stream stays open at most (the client reconnects with "
        "`Last-Event-ID`); a job's stream ends earlier, with the job",
        min=10,
        max=86400,
    )
    net_allow: tuple[str, ...] = option(
        (),
        "CIDRs the network guard lets collectors reach besides global addresses; the dev "
        "default only with `ENV=dev` set (as `collectq up` and `collectq collect` do), never "
        "for a process without `ENV`",
        profiles={"dev": LOOPBACK},
        check=_networks,
        explicit_profile=True,
    )
    net_allow_private: bool = option(
        False,
        "staging/prod: acknowledge that `NET_ALLOW` opens loopback, private or other non-global "
        "ranges to collectors (refused without it)",
    )
    max_retries: int = option(
        3, "retries of a transient failure (connect error, timeout, 429/5xx)", min=0, max=20
    )
    retry_backoff_base: float = option(
        1.0, "first retry delay, seconds (exponential backoff with full jitter)", min=0
    )
    retry_backoff_max: float = option(
        60.0,
        "longest retry delay, seconds (≥ `RETRY_BACKOFF_BASE`); `Retry-After` is honoured up to it",
        min=0,
    )
    heartbeat_interval: float = option(
        10.0, "a running collector refreshes its heartbeat this often, seconds", min=0.1, max=300
    )
    heartbeat_timeout: float = option(
        30.0,
        "a collector whose heartbeat is silent this long is lapsed (≥ 2 × `HEARTBEAT_INTERVAL`)",
        min=0.3,
    )
    reap_interval: float = option(
        30.0, "seconds between reaper passes (`maintenance.reap`, ticked by beat)", min=0.5
    )
    beat_lock_timeout: float = option(
        30.0,
        "seconds the active beat's lock (redbeat) lives without renewal: a standby beat "
        "takes over at most this long (plus `BEAT_MAX_INTERVAL`) after the active one died",
        min=1,
    )
    beat_max_interval: float = option(
        5.0,
        "longest sleep of beat between ticks, seconds (also how often a standby beat "
        "tries the lock)",
        min=0.1,
        max=300,
    )
    schedule_min_interval: float = option(
        60.0,
        "shortest interval a schedule may have, seconds",
        profiles={"dev": 1.0, "test": 1.0},
        min=0.5,
    )
    schedule_max_jitter: float = option(
        3600.0, "largest `jitter` a schedule may have, seconds", min=0
    )
    schedule_runs_max: int = option(
        1000, "runs kept in a schedule's history (the oldest go first)", min=1
    )
    schedule_runs_max_age: int = option(
        30 * 86400, "seconds a run stays in a schedule's history", min=60
    )
    schedule_stale_after: float = option(
        300.0,
        "a tick delivered later than this after its due time is counted `missed`, not run "
        "(beat or the maintenance worker was down)",
        min=1,
    )
    reap_queued_after: float = option(
        300.0,
        "a collector queued/retrying this long, with no message ready in its queue, is requeued",
        min=1,
    )
    reap_max_requeues: int = option(
        3, "requeues by the reaper before the collector fails with `lost`", min=0, max=100
    )
    max_redeliveries: int = option(
        3,
        "deliveries that died before recording (killed process, poison message) before the "
        "collector fails with `redelivery_limit`",
        min=0,
        max=100,
    )
    finished_grace: float = option(
        60.0,
        "a final job whose finalizer (`jobs.finished`: schedule bookkeeping, webhooks) has not "
        "run after this many seconds is announced again by the maintenance pass",
        min=1,
    )
    webhook_max_attempts: int = option(
        8, "attempts of one webhook delivery before it is marked `failed`", min=1, max=50
    )
    webhook_backoff_base: float = option(
        5.0,
        "first retry delay of a webhook delivery, seconds (exponential backoff with full "
        "jitter; a 429's `Retry-After` is honoured up to `WEBHOOK_BACKOFF_MAX`)",
        min=0,
    )
    webhook_backoff_max: float = option(
        600.0, "longest retry delay of a webhook delivery, seconds", min=0
    )
    webhook_timeout: float = option(
        10.0, "seconds a webhook receiver has to connect and answer", min=0.5, max=120
    )
    webhook_inline_max_bytes: int = option(
        1024 * 1024,
        "bytes of artifacts one webhook delivery carries inline (`callback_artifacts: inline`, "
        "base64 counted as raw bytes); an artifact beyond them stays a link",
        min=0,
        max=64 * 1024 * 1024,
    )
    webhook_secret_overlap: int = option(
        24 * 3600,
        "seconds the previous webhook signing secret still signs after a rotation (deliveries "
        "carry both signatures meanwhile)",
        min=0,
        max=30 * 86400,
    )
    public_url: str | None = option(
        None,
        "the API's public base URL (`https://collectq.example.org`): webhook bodies link "
        "artifacts under it; without it the links are relative (`/v1/jobs/…`)",
        check=_http_url,
    )
    breaker_fail_max: int = option(
        5,
        "consecutive transient failures of one target host that open its circuit breaker; "
        "`0` = no breakers",
        min=0,
    )
    breaker_reset_timeout: float = option(
        30.0, "seconds a breaker stays open before one probe call may pass (half-open)", min=1
    )
    host_concurrency: int = option(
        0,
        "at most this many calls in flight per target host across all workers (`0` = no cap); "
        "a call waits up to half its soft time limit for a slot, then is retried (`host_busy`)",
        min=0,
    )
    policies: Mapping[str, CollectorPolicy] = _family_option(
        "policies",
        "POLICY_<NAME>",
        "one collector's retries and guards: `retries=…,backoff_base=…,backoff_max=…,"
        "breaker_fail_max=…,breaker_reset_timeout=…,host_concurrency=…` (any subset)",
    )
    soft_shutdown_timeout: float = option(
        30.0,
        "on a cold shutdown (SIGQUIT) a worker gives running tasks this long, then puts their "
        "messages back",
        min=0,
        max=3600,
    )
    broker_heartbeat: float = option(
        60.0,
        "AMQP heartbeat, seconds: a hung broker or network is noticed within two of them "
        "(`0` = off)",
        min=0,
        max=600,
    )
    soft_time_limit: int = option(
        60,
        "soft time limit of plugin collectors' tasks, seconds (built-ins: see `POOL_<NAME>`)",
        min=1,
    )
    hard_time_limit: int = option(
        90, "hard time limit of plugin collectors' tasks, seconds (> `SOFT_TIME_LIMIT`)", min=1
    )
    worker_pool: str = option(
        "threads",
        "pool of a worker for several queues, and of plugin collectors",
        choices=POOL_TYPES,
    )
    worker_concurrency: int = option(16, "concurrency of such a worker", min=1)
    pools: Mapping[str, PoolSettings] = _family_option(
        "pools",
        "POOL_<NAME>",
        "one collector's worker: `pool=…,concurrency=…,prefetch=…,soft_time_limit=…,"
        "hard_time_limit=…` (any subset)",
    )
    chromium_path: str = option("/usr/bin/chromium", "the browser of the screenshot collector")
    chromium_no_sandbox: bool = option(
        False,
        "let Chromium run without its sandbox when the worker is root (where the sandbox cannot "
        "run); dev/test allow it anyway, staging/prod need this opt-in, else the screenshot "
        "collector is unavailable",
    )
    dns_resolver: str | None = option(
        None,
        "IP address of the resolver the dns collector asks when a job names no `nameserver` "
        "(default: the system's, resolv.conf)",
        check=_ip_address,
    )
    plugins: tuple[str, ...] = option(
        (),
        "extra collectors as `name=module:Class`, besides the `collectq.collectors` entry points",
    )
    log_level: str = option("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_json: bool = option(
        False, "JSON logs, one line per event", profiles={"staging": True, "prod": True}
    )
    auth: bool = option(
        True,
        "`off` only under `collectq up`, with `ENV=dev` set and a loopback `API_HOST` (what "
        "`collectq up` does by default); such an API answers loopback connections only",
        kind="switch",
    )
    key_rotation_overlap: int = option(
        24 * 3600, "seconds a rotated key keeps working", min=0, max=90 * 86400
    )
    key_last_used_interval: int = option(
        60, "a key's `last_used_at` is written at most this often, seconds", min=0
    )
    key_cache_ttl: float = option(
        2.0,
        "seconds an API process reuses a verified key's record without reading Redis; a "
        "revocation, expiry change or rotation made in another process takes effect there "
        "within this time (at once in the process that made it); 0: read on every request",
        min=0,
        max=60,
    )
    key_rotation_period: int = option(
        0,
        "seconds after which a new key is due for rotation (its `rotation_period`; a key "
        "created with one of its own keeps it); 0: keys have none unless given",
        min=0,
        max=10 * 365 * 86400,
    )
    key_expiry_warning: int = option(
        14 * 86400,
        "seconds before a key's expiry from which it is flagged (Deprecation/Sunset headers, "
        "the owner's `key.expiring` webhook, `collectq_api_keys_flagged`)",
        min=0,
        max=365 * 86400,
    )
    key_check_interval: int = option(
        3600,
        "seconds between two passes that send `key.expiring` webhooks (run by the "
        "maintenance tick)",
        min=60,
        max=7 * 86400,
    )
    jwt_keys: str | None = option(
        None, "JSON key set (see Authentication); enables JWT", secret=True
    )
    jwt_issuer: str | None = option(None, "the `iss` a JWT must carry; required with `JWT_KEYS`")
    jwt_audience: str | None = option(None, "the `aud` a JWT must carry; required with `JWT_KEYS`")
    jwt_scopes_claim: str = option("scope", "claim holding the scopes")
    jwt_leeway: int = option(30, "clock skew allowed, seconds", min=0, max=300)
    jwt_max_lifetime: int = option(
        86400, "longest JWT accepted (`exp - iat`), seconds", min=60, max=30 * 86400
    )
    rate_limit_submit: str = option(
        "120/minute",
        "limit per client of submitting jobs; a key may override it",
        check=_rate_limit,
    )
    rate_limit_read: str = option(
        "1200/minute", "limit per client of reading; a key may override it", check=_rate_limit
    )
    rate_limit_admin: str = option(
        "60/minute", "limit per client of admin calls; a key may override it", check=_rate_limit
    )
    rate_limit_enabled: bool = option(
        True, "`false` turns rate limiting off (staging/prod: only with `ALLOW_NO_RATE_LIMIT`)"
    )
    allow_no_rate_limit: bool = option(
        False, "staging/prod: allow `RATE_LIMIT_ENABLED=false` (a gateway limits instead)"
    )
    trusted_proxies: int = option(
        0, "proxies in front that append `X-Forwarded-For` (ProxyFix hops)", min=0, max=10
    )
    max_queued_jobs: int = option(
        1000, "queued jobs per owner (`0`: no cap; refused in staging/prod)", min=0
    )
    batch_max: int = option(
        100, "most jobs in one `POST /v1/jobs/batch` (more: 422)", min=1, max=1000
    )
    max_age_max: int = option(
        30 * 24 * 3600,
        "largest `max_age` (seconds) a job request may give to reuse an identical job "
        "(larger: 422); `0` lets requests share in-flight jobs only",
        min=0,
        max=30 * 24 * 3600,
    )
    cors_origins: tuple[str, ...] = option(
        (), "allowed origins; CORS off when empty (wildcard refused in staging/prod)"
    )
    cors_credentials: bool = option(
        False, "let browsers send credentials (no wildcard origin then)"
    )
    cors_methods: tuple[str, ...] = option(
        ("GET", "POST", "DELETE"), "methods allowed cross-origin"
    )
    cors_headers: tuple[str, ...] = option(_CORS_HEADERS, "request headers allowed cross-origin")
    cors_max_age: int = option(
        600, "seconds a browser may cache a preflight answer", min=0, max=86400
    )
    debug: bool = option(False, "Flask debug mode; refused in staging/prod")
    secret_key: str | None = option(
        None, "Flask secret key; at least 16 chars, not a default", secret=True, required=HARDENED
    )
    sentry_dsn: str | None = option(None, "Sentry DSN; never printed", secret=True)
    secret_watch_interval: float = option(
        10.0,
        "seconds between checks of the `*_FILE` secrets; a change reloads the API, workers "
        "and Flower without a restart (`0` = off; SIGHUP still reloads)",
        min=0,
        max=3600,
    )
    flower_basic_auth: str | None = option(
        None, "`user:password[,user:password]`; required for Flower in staging/prod", secret=True
    )
    flower_host: str = option("127.0.0.1", "address `collectq flower` listens on")
    flower_port: int = option(5555, "port `collectq flower` listens on", min=1, max=65535)
    metrics_host: str = option("127.0.0.1", "address of the Prometheus listeners (API, workers)")
    metrics_port: int = option(
        9464,
        "port of the API's `/metrics` listener, apart from the API's (`0` = off)",
        min=0,
        max=65535,
    )
    worker_metrics_port: int = option(
        0,
        "port of a worker node's `/metrics` listener (`0` = off; one port per node)",
        min=0,
        max=65535,
    )
    metrics_dir: str | None = option(
        None, "where API/worker processes keep their metric files (default: the temp dir)"
    )
    embedded_redis_port: int = option(
        6390, "port of the embedded Redis of `collectq up`", min=1, max=65535
    )


@dataclass(frozen=True)
class Setting:
    """One declared setting: its field name, variable, parser kind and `Option`."""

    name: str
    var: str
    kind: str
    option: Option

    def default_in(self, profile: str) -> Any:
        return self.option.default_in(profile)


# The parser (an environs method, or our own) of each annotation in the table.
_KINDS: dict[object, str] = {
    str: "str",
    str | None: "str",
    int: "int",
    float: "float",
    bool: "bool",
    tuple[str, ...]: "list",
}


@functools.cache
def declared() -> tuple[Setting, ...]:
    """The settings of `Options`, in table order."""
    hints = typing.get_type_hints(Options)
    out = []
    for f in dataclasses.fields(Options):
        opt: Option = f.metadata["option"]
        kind = opt.kind or _KINDS.get(hints[f.name])
        if kind is None:
            raise TypeError(f"Options.{f.name}: no parser for {hints[f.name]}; set kind=")
        var = PREFIX + (opt.var or f.name.upper())
        out.append(Setting(f.name, var, kind, opt))
    return tuple(out)


def env_text(kind: str, value: Any) -> str:
    """`value` as its variable would spell it."""
    if kind == "switch":
        return "on" if value else "off"
    if kind == "bool":
        return "true" if value else "false"
    if kind == "list":
        return ",".join(value)
    if kind == "float":  # `5`, not `5.0`, but never a rounded value
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)
