"""One settings object for the API, the workers, beat and the CLI.

Read once (``load_settings``) from ``COLLECTQ_*`` environment variables, as declared in
`app.options`; any of them may come from ``COLLECTQ_<NAME>_FILE`` instead (Docker/K8s
secrets). Every bad variable is reported at once, by name. Profiles (``COLLECTQ_ENV``)
only change defaults; explicit variables always win.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from environs import EnvValidationError, FileAwareEnv
from marshmallow import ValidationError
from marshmallow.validate import OneOf

from app.options import (
    HARDENED,
    POOL_DEFAULTS,
    POOL_TYPES,
    PREFIX,
    PROFILES,
    Options,
    PoolSettings,
    Setting,
    declared,
    env_text,
    settings_table_markdown,
    with_settings_table,
)
from schemas.keys import ROUTE_CLASSES

__all__ = [
    "POOL_TYPES",
    "PROFILES",
    "ROUTE_CLASSES",
    "RUN_FILE",
    "UP_TOKEN_VAR",
    "ConfigError",
    "PoolSettings",
    "Settings",
    "as_environ",
    "configured",
    "is_loopback_host",
    "load_settings",
    "open_api_refusal",
    "open_request_allowed",
    "read_setting",
    "redact_url",
    "settings_table_markdown",
    "up_run",
    "with_settings_table",
]

# Values that are published defaults somewhere (ours, compose files, tutorials): never secrets.
_DEFAULT_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "admin", "guest", "dev",
     "default", "collectq", "test", "example", "insecure"}
)  # fmt: skip
MIN_SECRET_LENGTH = 16
_POOL_PREFIX = f"{PREFIX}POOL_"
_FILE = "_FILE"
_UNSET: Any = object()  # what a reader returns for a variable that is not set
_EXPLICIT_ENV = "_env_explicit"  # in the values the rules see: COLLECTQ_ENV was set
# `collectq up` writes this while it runs (relative to its directory): its pid, the URLs of
# its embedded Redis, and the token it hands its children (`UP_TOKEN_VAR`).
RUN_FILE = Path(".collectq") / "run.json"
UP_TOKEN_VAR = "COLLECTQ_UP_TOKEN"  # noqa: S105 - a name; set by `collectq up` for its children
# Query parameters that carry a password in Redis/AMQP URLs (redis-py reads `password`).
_SECRET_PARAMS = frozenset({"password", "pass", "passwd", "pwd"})


class ConfigError(Exception):
    """Invalid configuration; `errors` maps each variable name to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        lines = [f"{name}: {'; '.join(msgs)}" for name, msgs in sorted(errors.items())]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Settings(Options):
    """The effective configuration (fields: `app.options.Options`)."""

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
        return _pool_default(collector, vars(self))

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for s in declared():
            value = getattr(self, s.name)
            if s.option.secret:
                value = "***" if value else None
            elif s.name.endswith("_url") and isinstance(value, str):
                value = redact_url(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif s.kind == "pools":
                names = sorted({*POOL_DEFAULTS, *value})
                value = {n: dataclasses.asdict(self.pool_for(n)) for n in names}
            out[f"{PREFIX}{s.name.upper()}"] = value
        return out


def _pool_default(collector: str, values: Mapping[str, Any]) -> PoolSettings:
    return POOL_DEFAULTS.get(collector) or PoolSettings(
        values["worker_pool"],
        values["worker_concurrency"],
        1,
        values["soft_time_limit"],
        values["hard_time_limit"],
    )


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


def _url_password(url: str) -> str | None:
    """The password a Redis/AMQP URL carries (userinfo or query), or None."""
    parts = urlsplit(url.strip())
    if parts.password:
        return parts.password
    for param in parts.query.split("&"):
        key, eq, value = param.partition("=")
        if eq and value and key.strip().lower() in _SECRET_PARAMS:
            return value
    return None


def up_run(directory: Path | None = None) -> dict[str, Any] | None:
    """What the `collectq up` running in `directory` (default: here) wrote, or None.

    A run file whose process is gone (an `up` that was killed) is ignored.
    """
    try:  # Path.cwd() too: the directory may be gone
        data = json.loads(((directory or Path.cwd()) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not _alive(data.get("pid")):
        return None
    return data


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_api_refusal(
    settings: Settings, token: str | None, run: Mapping[str, Any] | None
) -> str | None:
    """Why an API with auth off must not start (None: auth is on, or this API is the child
    of the `collectq up` whose run file holds `token`)."""
    if settings.auth:
        return None
    expected = str((run or {}).get("token") or "")
    if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return (
        "COLLECTQ_AUTH=off is only allowed for the API that `collectq up` supervises; "
        "set COLLECTQ_AUTH=on and create a key (collectq keys create)"
    )


def open_request_allowed(local: str | None, remote: str | None) -> bool:
    """Whether an API with auth off may answer a connection: only when both its local
    address (the socket the server accepted it on) and the peer are loopback. A unix
    socket or an unknown address is refused (a proxy could stand behind either)."""
    return (
        bool(local and remote) and is_loopback_host(local or "") and is_loopback_host(remote or "")
    )


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (what dev may bind open)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _setting(name: str) -> Setting:
    for s in declared():
        if s.name == name:
            return s
    raise KeyError(name)


def configured(name: str) -> bool:
    """Whether the variable of setting `name`, or its ``_FILE`` form, is set (non-empty)."""
    var = _setting(name).var
    return bool(os.environ.get(var) or os.environ.get(var + _FILE))


def as_environ(**values: Any) -> dict[str, str]:
    """The variables that make a child process load these values (field name → value)."""
    return {_setting(k).var: env_text(_setting(k).kind, v) for k, v in values.items()}


class _Errors(dict[str, list[str]]):
    def add(self, var: str, message: str) -> None:
        self.setdefault(var, []).append(message)


def _read(env: FileAwareEnv, s: Setting, errors: _Errors) -> Any:
    """The variable's value, `_UNSET`, or None after recording why it is unusable."""
    key = s.var.removeprefix(PREFIX)
    try:
        if s.kind == "switch":
            raw = env.str(key, _UNSET, validate=OneOf(("on", "off")))
            return raw if raw in (_UNSET, None) else raw == "on"
        value = getattr(env, s.kind)(key, _UNSET)
    except ValueError as exc:  # an unreadable _FILE; its message names only the path variable
        errors.add(s.var, str(exc))
        return None
    return tuple(value) if isinstance(value, list) else value


def _seal(env: FileAwareEnv, errors: _Errors) -> None:
    try:
        env.seal()
    except EnvValidationError as exc:
        messages = exc.error_messages  # per variable, names already prefixed
        if isinstance(messages, dict):
            for var, msgs in messages.items():
                for msg in msgs:
                    errors.add(var, str(msg))


def _new_env() -> FileAwareEnv:
    # A file written with `echo` ends in a newline that no value means.
    return FileAwareEnv(eager=False, prefix=PREFIX, strip_whitespace=True)


def _values(
    settings: tuple[Setting, ...],
    overrides: Mapping[str, Any],
    errors: _Errors,
    fallbacks: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], set[str]]:
    """Each setting's value (override, variable, fallback, profile default) and the names
    that failed; `values[_EXPLICIT_ENV]` says whether the profile was chosen.

    A failed setting holds its default, so that rules over several settings can skip it.
    `fallbacks` (the run file of `collectq up`) are ignored in staging/prod.
    """
    env = _new_env()
    raw = {s.name: _read(env, s, errors) for s in settings if s.kind != "pools"}
    _seal(env, errors)
    for name, value in overrides.items():
        if name not in raw and name != "pools":
            raise TypeError(f"load_settings: no setting named {name!r}")
        errors.pop(_setting(name).var, None)
        raw[name] = value
    chosen = raw.get("env", _UNSET)
    explicit = chosen in PROFILES
    profile = chosen if explicit else "dev"
    if profile in HARDENED:
        fallbacks = None
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for s in settings:
        if s.kind == "pools":
            continue
        value = raw[s.name]
        if value is _UNSET:
            value = (fallbacks or {}).get(s.name, _UNSET)
        if value is _UNSET:
            value = _default(s, profile, explicit)
        if s.var in errors or not _valid(s, value, profile, errors):
            failed.add(s.name)
            value = _default(s, profile, explicit)
        values[s.name] = value
    values[_EXPLICIT_ENV] = explicit
    return values, failed


def _default(s: Setting, profile: str, explicit: bool) -> Any:
    """A profile's default; an `explicit_profile` setting's only when COLLECTQ_ENV is set."""
    if s.option.explicit_profile and not explicit:
        return s.option.default
    return s.default_in(profile)


def _valid(s: Setting, value: Any, profile: str, errors: _Errors) -> bool:
    if value is None or value == "":
        if profile in s.option.required:
            errors.add(s.var, f"required in the {profile} profile")
            return False
        return True
    ok = True
    for check in s.option.validators():
        try:
            check(value)
        except ValidationError as exc:
            msgs = exc.messages if isinstance(exc.messages, list) else [str(exc.messages)]
            for msg in msgs:
                errors.add(s.var, str(msg))
            ok = False
    return ok


def read_setting(name: str) -> Any:
    """One setting, checked on its own (no rules over several settings)."""
    errors = _Errors()
    wanted = tuple(s for s in declared() if s.name in ("env", name))
    values, _ = _values(wanted, {}, errors, _up_urls({}))
    if errors:
        raise ConfigError(dict(errors))
    return values[name]


def load_settings(**overrides: Any) -> Settings:
    """Read and validate ``COLLECTQ_*`` variables; raise ConfigError naming each bad one.

    `overrides` (field name → value) win over the environment (`collectq up`, tests).
    """
    errors = _Errors()
    values, failed = _values(declared(), overrides, errors, _up_urls(overrides))
    if "pools" in overrides:
        values["pools"] = overrides["pools"]
    else:
        values["pools"] = MappingProxyType(_read_pools(values, errors))
    _check(values, failed, errors)
    if errors:
        raise ConfigError(dict(errors))
    values.pop(_EXPLICIT_ENV)
    return Settings(**values)


def _up_urls(overrides: Mapping[str, Any]) -> dict[str, Any] | None:
    """The URLs of the embedded Redis of the `collectq up` running in this directory, when
    neither COLLECTQ_REDIS_URL nor COLLECTQ_BROKER_URL (nor an override) names a service."""
    names = ("redis_url", "broker_url")
    if any(n in overrides or configured(n) for n in names):
        return None
    run = up_run()
    if run is None or not all(isinstance(run.get(n), str) for n in names):
        return None
    return {n: run[n] for n in names}


def _read_pools(values: Mapping[str, Any], errors: _Errors) -> dict[str, PoolSettings]:
    """``COLLECTQ_POOL_<NAME>`` (or ``_FILE``): ``pool=prefork,concurrency=2,...``.

    Keys left out keep the collector's default; every bad key or value is reported by variable.
    """
    keys = {k.removesuffix(_FILE) for k in os.environ if k.startswith(_POOL_PREFIX)}
    env = _new_env()
    pools: dict[str, PoolSettings] = {}
    for var in sorted(keys - {_POOL_PREFIX}):
        try:
            spec = env.str(var.removeprefix(PREFIX), "")
        except ValueError as exc:
            errors.add(var, str(exc))
            continue
        name = var.removeprefix(_POOL_PREFIX).lower()
        merged: dict[str, Any] = dataclasses.asdict(_pool_default(name, values))
        problems = [p for item in spec.split(",") if (p := _pool_item(item.strip(), merged))]
        if merged["hard_time_limit"] <= merged["soft_time_limit"]:
            problems.append("hard_time_limit must be greater than soft_time_limit")
        for problem in problems:
            errors.add(var, problem)
        if not problems:
            pools[name] = PoolSettings(**merged)
    return pools


def _pool_item(item: str, merged: dict[str, Any]) -> str | None:
    """Apply one ``key=value`` to `merged`; what is wrong with it, if anything."""
    if not item:
        return None
    key, sep, raw = (p.strip() for p in item.partition("="))
    if not sep or key not in merged:
        return f"{item!r}: expected key=value with key in {', '.join(merged)}"
    if key == "pool":
        merged[key] = raw
        return None if raw in POOL_TYPES else f"pool must be one of {', '.join(POOL_TYPES)}"
    if not raw.isdigit() or int(raw) < 1:
        return f"{key} must be a positive integer"
    merged[key] = int(raw)
    return None


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
    if v["env"] != "dev" or not v[_EXPLICIT_ENV]:
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
        password = _url_password(url)
        if urlsplit(url.strip()).username == "guest" or password is None:
            bad("broker_url", f"{which}guest or missing broker credentials are not allowed in "
                "this profile")  # fmt: skip
        elif _is_default_secret(password):
            bad("broker_url", f"{which}the broker password is a default or short value")


def _redis_password(v: Mapping[str, Any], bad: Bad) -> None:
    password = _url_password(v["redis_url"] or "")
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


_RULES: tuple[tuple[tuple[str, ...], Rule], ...] = (
    (("soft_time_limit", "hard_time_limit"), _time_limits),
    (("heartbeat_interval", "heartbeat_timeout"), _heartbeat),
    (("job_deadline", "job_ttl"), _deadline),
    (("retry_backoff_base", "retry_backoff_max"), _backoff),
    (("cors_credentials", "cors_origins"), _cors_credentials),
    (("auth", "env", "api_host"), _auth_off),
    (("jwt_keys", "jwt_issuer", "jwt_audience"), _jwt),
)
_HARDENED_RULES: tuple[tuple[tuple[str, ...], Rule], ...] = (
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


def _check(values: Mapping[str, Any], failed: set[str], errors: _Errors) -> None:
    """Apply the rules whose settings are all valid on their own."""

    def bad(name: str, msg: str) -> None:
        errors.add(_setting(name).var, msg)

    rules = _RULES + (_HARDENED_RULES if values["env"] in HARDENED else ())
    for uses, rule in rules:
        if failed.isdisjoint(uses):
            rule(values, bad)


def _is_default_secret(value: str) -> bool:
    return value.strip().lower() in _DEFAULT_SECRETS or len(value) < MIN_SECRET_LENGTH
