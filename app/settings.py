"""One settings object for the API, the workers, beat and the CLI.

Read once (``load_settings``) from ``COLLECTQ_*`` environment variables, as declared in
`app.options`; any of them may come from ``COLLECTQ_<NAME>_FILE`` instead (Docker/K8s
secrets). Every bad variable is reported at once, by name. Profiles (``COLLECTQ_ENV``)
only change defaults; explicit variables always win.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from environs import EnvValidationError, FileAwareEnv
from marshmallow import ValidationError
from marshmallow.validate import OneOf

from app.options import (
    HARDENED,
    POLICY_DEFAULTS,
    POLICY_GLOBALS,
    POOL_DEFAULTS,
    POOL_TYPES,
    PREFIX,
    PROFILES,
    CollectorPolicy,
    Options,
    PoolSettings,
    Setting,
    declared,
    env_text,
)
from app.settings_rules import EXPLICIT_ENV, HARDENED_RULES, RULES
from app.uprun import RUN_FILE, UP_TOKEN_VAR, open_api_refusal, open_request_allowed, up_run
from app.urls import is_loopback_host, redact_url
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
    "up_run",
]

_POOL_PREFIX = f"{PREFIX}POOL_"
_POLICY_PREFIX = f"{PREFIX}POLICY_"
FAMILIES = ("pools", "policies")  # settings that are a family of variables, one per collector
_FILE = "_FILE"
_UNSET: Any = object()  # what a reader returns for a variable that is not set


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

    def policy_for(self, collector: str) -> CollectorPolicy:
        """The retries and guards of `collector` (`POLICY_<NAME>`, explicit globals, the
        built-in default, the globals: in that order). Plugins get the globals."""
        if collector in self.policies:
            return self.policies[collector]
        return _policy_default(collector, vars(self), explicit=frozenset())

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
            elif s.kind == "policies":
                names = sorted({*POLICY_DEFAULTS, *value})
                value = {n: dataclasses.asdict(self.policy_for(n)) for n in names}
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


def _policy_default(
    collector: str, values: Mapping[str, Any], explicit: frozenset[str]
) -> CollectorPolicy:
    """A built-in collector's policy with the explicitly set globals in; else the globals."""
    from_globals = {f: values[g] for f, g in POLICY_GLOBALS.items()}
    built_in = POLICY_DEFAULTS.get(collector)
    if built_in is None:
        return CollectorPolicy(**from_globals)
    policy = dataclasses.replace(built_in, **{f: from_globals[f] for f in explicit})
    # an explicit RETRY_BACKOFF_MAX below a built-in base: the base comes down to it
    return dataclasses.replace(policy, backoff_base=min(policy.backoff_base, policy.backoff_max))


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
    that failed; `values[EXPLICIT_ENV]` says whether the profile was chosen.

    A failed setting holds its default, so that rules over several settings can skip it.
    `fallbacks` (the run file of `collectq up`) are ignored in staging/prod.
    """
    env = _new_env()
    raw = {s.name: _read(env, s, errors) for s in settings if s.kind not in FAMILIES}
    _seal(env, errors)
    for name, value in overrides.items():
        if name not in raw and name not in FAMILIES:
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
        if s.kind in FAMILIES:
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
    values[EXPLICIT_ENV] = explicit
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
    if "policies" in overrides:
        values["policies"] = overrides["policies"]
    else:
        explicit = frozenset(
            f for f, g in POLICY_GLOBALS.items() if g in overrides or configured(g)
        )
        values["policies"] = MappingProxyType(_read_policies(values, explicit, errors))
    _check(values, failed, errors)
    if errors:
        raise ConfigError(dict(errors))
    values.pop(EXPLICIT_ENV)
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
    pools: dict[str, PoolSettings] = {}
    for var, name, merged, problems in _family(
        _POOL_PREFIX, lambda n: _pool_default(n, values), errors, 1
    ):
        if merged["hard_time_limit"] <= merged["soft_time_limit"]:
            problems.append("hard_time_limit must be greater than soft_time_limit")
        if not problems:
            pools[name] = PoolSettings(**merged)
        _report(var, problems, errors)
    return pools


def _read_policies(
    values: Mapping[str, Any], explicit: frozenset[str], errors: _Errors
) -> dict[str, CollectorPolicy]:
    """Every built-in collector's policy, and ``COLLECTQ_POLICY_<NAME>`` (or ``_FILE``):
    ``retries=5,backoff_base=0.2,...`` over it (keys left out keep the default)."""

    def base(name: str) -> CollectorPolicy:
        return _policy_default(name, values, explicit)

    policies = {name: base(name) for name in POLICY_DEFAULTS}
    for var, name, merged, problems in _family(_POLICY_PREFIX, base, errors, 0):
        if merged["backoff_max"] < merged["backoff_base"]:
            problems.append("backoff_max must be at least backoff_base")
        if merged["breaker_reset_timeout"] < 1:
            problems.append("breaker_reset_timeout must be at least 1")
        if merged["retries"] > MAX_POLICY_RETRIES:
            problems.append(f"retries must be at most {MAX_POLICY_RETRIES}")
        if not problems:
            policies[name] = CollectorPolicy(**merged)
        _report(var, problems, errors)
    return policies


MAX_POLICY_RETRIES = 20


def _family(
    var_prefix: str, base: Any, errors: _Errors, minimum: int
) -> Iterator[tuple[str, str, dict[str, Any], list[str]]]:
    """Each ``{var_prefix}<NAME>`` variable: its name, the collector, its base settings
    with the variable's ``key=value`` items applied, and what was wrong with them."""
    keys = {k.removesuffix(_FILE) for k in os.environ if k.startswith(var_prefix)}
    env = _new_env()
    for var in sorted(keys - {var_prefix}):
        try:
            spec = env.str(var.removeprefix(PREFIX), "")
        except ValueError as exc:
            errors.add(var, str(exc))
            continue
        name = var.removeprefix(var_prefix).lower()
        merged: dict[str, Any] = dataclasses.asdict(base(name))
        problems = [p for item in spec.split(",") if (p := _item(item.strip(), merged, minimum))]
        yield var, name, merged, problems


def _report(var: str, problems: list[str], errors: _Errors) -> None:
    for problem in problems:
        errors.add(var, problem)


def _item(item: str, merged: dict[str, Any], minimum: int) -> str | None:
    """Apply one ``key=value`` to `merged` (typed like the key's default); what is wrong
    with it, if anything."""
    if not item:
        return None
    key, sep, raw = (p.strip() for p in item.partition("="))
    if not sep or key not in merged:
        return f"{item!r}: expected key=value with key in {', '.join(merged)}"
    if key == "pool":
        merged[key] = raw
        return None if raw in POOL_TYPES else f"pool must be one of {', '.join(POOL_TYPES)}"
    if isinstance(merged[key], float):
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            return f"{key} must be a number of seconds, at least 0"
        merged[key] = value
        return None
    if not raw.isdigit() or int(raw) < minimum:
        return f"{key} must be a positive integer" if minimum else f"{key} must be an integer ≥ 0"
    merged[key] = int(raw)
    return None


def _check(values: Mapping[str, Any], failed: set[str], errors: _Errors) -> None:
    """Apply the rules whose settings are all valid on their own."""

    def bad(name: str, msg: str) -> None:
        errors.add(_setting(name).var, msg)

    rules = RULES + (HARDENED_RULES if values["env"] in HARDENED else ())
    for uses, rule in rules:
        if failed.isdisjoint(uses):
            rule(values, bad)
