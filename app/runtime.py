"""The per-process services every part reaches through one object.

Built once by `create_app` and kept in ``app.extensions["collectq"]``; tasks
find it through the Flask app context their base class pushes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from app import metrics
from app.auth.apikeys import KeyStore
from app.auth.jwtauth import JwtVerifier
from app.auth.principal import Authenticator
from app.jobs.breaker import Breakers
from app.jobs.context import JobContext
from app.jobs.hostcap import HostSlots
from app.jobs.store import JobStore
from app.jwks import parse_key_set
from app.metrics import MetricsObserver
from app.options import HARDENED
from app.redisclient import redis_client
from app.settings import Settings
from collectors.base import NetworkPolicy
from collectors.registry import Registry, load_registry

__all__ = [
    "EXTENSION",
    "Runtime",
    "breakers_of",
    "build_runtime",
    "load_collectors",
    "network_policy",
    "runtime",
]

EXTENSION = "collectq"


@dataclass
class Runtime(JobContext):
    """The job domain's services plus identity (what the API needs on top)."""

    keys: KeyStore
    auth: Authenticator


def load_collectors(settings: Settings) -> Registry:
    """The collectors of this process, configured from `settings` (nothing starts yet)."""
    config: dict[str, dict[str, Any]] = {
        "screenshot": {
            "chromium_path": settings.chromium_path,
            # as root Chromium can only run without its sandbox: dev/test, or an explicit opt-in
            "allow_no_sandbox": settings.env not in HARDENED or settings.chromium_no_sandbox,
        },
        "dns": {"resolver": settings.dns_resolver},
    }
    return load_registry(settings.plugins, config)


def network_policy(settings: Settings) -> NetworkPolicy:
    """The network guard's policy: `NET_ALLOW`, and in staging/prod no internal-network
    oracle (refusals name the class of an address, dns withholds internal answers)."""
    return NetworkPolicy.from_strings(settings.net_allow, conceal_internal=settings.env in HARDENED)


def build_runtime(settings: Settings) -> Runtime:
    """Create clients and load collectors. Connections open lazily, on first use."""
    redis = redis_client(settings.redis_url, read_timeout=max(10, settings.max_wait + 5))
    breakers = breakers_of(settings)
    keys = KeyStore(
        redis,
        settings.redis_prefix,
        settings.key_last_used_interval,
        cache_ttl=settings.key_cache_ttl,
    )
    registry = load_collectors(settings)
    return Runtime(
        settings=settings,
        redis=redis,
        store=JobStore(
            redis,
            settings.redis_prefix,
            settings.job_ttl,
            queued_grace=settings.reap_queued_after,
            deadline=settings.job_deadline,
        ),
        registry=registry,
        policy=network_policy(settings),
        breakers=breakers,
        host_slots=HostSlots(lambda: breakers.redis, settings.redis_prefix),
        keys=keys,
        auth=Authenticator(keys, _jwt_verifier(settings), settings.key_expiry_warning),
        observer=MetricsObserver(registry.names()),
    )


def breakers_of(settings: Settings) -> Breakers:
    """The circuit breakers, each with its collector's thresholds (`Settings.policy_for`)."""

    def limits(collector: str) -> tuple[int, float]:
        policy = settings.policy_for(collector)
        return policy.breaker_fail_max, policy.breaker_reset_timeout

    return Breakers(
        settings.redis_url,
        settings.redis_prefix,
        fail_max=settings.breaker_fail_max,
        reset_timeout=settings.breaker_reset_timeout,
        limits=limits,
        on_transition=metrics.count_breaker_transition,
    )


def _jwt_verifier(settings: Settings) -> JwtVerifier | None:
    if not settings.jwt_keys or not settings.jwt_issuer or not settings.jwt_audience:
        return None  # load_settings already refused a key set without issuer/audience
    return JwtVerifier(
        parse_key_set(settings.jwt_keys),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
        scopes_claim=settings.jwt_scopes_claim,
        max_lifetime=settings.jwt_max_lifetime,
    )


def runtime(app: Flask | None = None) -> Runtime:
    """The Runtime of `app`, or of the current Flask app."""
    rt: Runtime = (app or current_app).extensions[EXTENSION]
    return rt
