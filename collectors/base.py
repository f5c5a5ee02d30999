"""The collector contract: what every collector (built-in or plugin) implements.

A collector knows nothing about Flask, Celery or Redis. It takes a target, its
validated options and a context, and returns a :class:`Result` or raises a
:class:`CollectorError`.

Exception tree (every `error` an envelope can hold)::

    CollectorError                 (type, detail, retryable, retry_after)
    ├── BlockedAddress             blocked_address   the network guard refused
    ├── InvalidTarget              invalid_target    target or options unusable here
    ├── TargetTimeout              timeout           retryable
    ├── TargetConnectError         connect_error     retryable
    ├── TransientResponse          transient_status  retryable; carries the Result
    ├── TlsError                   tls_error         certificate or handshake failure
    ├── CollectorUnavailable       unavailable       dependency missing (registry reports it)
    ├── CollectorCrashed           collector_crashed a bug in a collector (collectors.runner)
    └── the job domain's: TimeLimitExceeded, RedeliveryLimit, Lost, CircuitOpen,
        HostBusy (app.jobs.errors, which draws them)
"""

from __future__ import annotations

import abc
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema

from collectors import fingerprint as fp

__all__ = [
    "Artifact",
    "BlockedAddress",
    "CollectContext",
    "Collector",
    "CollectorError",
    "CollectorUnavailable",
    "InvalidTarget",
    "NetworkPolicy",
    "Result",
    "TargetConnectError",
    "TargetTimeout",
    "TlsError",
    "TransientResponse",
]


@dataclass(frozen=True)
class Artifact:
    """Binary output of a collector, stored raw next to the job."""

    name: str
    content_type: str
    body: bytes


@dataclass
class Result:
    """What a successful collection produced. `data` must match the result schema."""

    data: dict[str, Any]
    artifacts: list[Artifact] = field(default_factory=list)


class CollectorError(Exception):
    """A collection that did not produce a result. Rendered as the envelope's `error`."""

    type: ClassVar[str] = "collector_error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "detail": self.detail, "retryable": self.retryable}


class BlockedAddress(CollectorError):
    type = "blocked_address"


class InvalidTarget(CollectorError):
    type = "invalid_target"


class TargetTimeout(CollectorError):
    type = "timeout"
    retryable = True


class TargetConnectError(CollectorError):
    type = "connect_error"
    retryable = True


class TransientResponse(CollectorError):
    """The target answered, but with something worth retrying (429, 5xx).

    `result` holds that answer: when retries run out it is recorded as the
    collector's data, since the target's own answer is data (docs/architecture.md).
    """

    type = "transient_status"
    retryable = True

    def __init__(self, detail: str, result: Result, *, retry_after: float | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.result = result


class TlsError(CollectorError):
    """Certificate or handshake failure: a property of the target, not worth retrying."""

    type = "tls_error"


class CollectorUnavailable(CollectorError):
    type = "unavailable"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NetworkPolicy:
    """Which otherwise-forbidden networks outbound connections may reach.

    Global unicast addresses are always allowed; everything else (loopback,
    private, link-local, ...) only when inside one of `allow`. The decision
    itself lives in `collectors.netguard`.

    `conceal_internal` (set in the staging and prod profiles) keeps collectors
    from being an oracle of the internal network: a refusal names the class of
    the address, not the address, and the dns collector withholds answers that
    are neither global nor inside `allow`.
    """

    allow: tuple[IPNetwork, ...] = ()
    conceal_internal: bool = False

    @classmethod
    def from_strings(
        cls, cidrs: list[str] | tuple[str, ...], *, conceal_internal: bool = False
    ) -> NetworkPolicy:
        allow = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())
        return cls(allow, conceal_internal=conceal_internal)


@dataclass(frozen=True)
class CollectContext:
    """Per-call facts a collector may use. No framework objects in here."""

    policy: NetworkPolicy
    job_id: str | None = None
    attempt: int = 1
    timeout: float = 30.0


class Collector(abc.ABC):
    """Base class of every collector.

    Subclasses set `name`, `options_schema` and `result_schema` and implement
    :meth:`collect`. One instance lives per worker process (or per CLI run), so
    pools and browsers belong on the instance, created lazily, released in
    :meth:`close`.
    """

    name: ClassVar[str]
    options_schema: ClassVar[type[Schema]]
    result_schema: ClassVar[type[Schema]]

    def check_available(self) -> None:  # noqa: B027 - optional hook
        """Raise CollectorUnavailable if a dependency (a binary, a library) is missing."""

    @abc.abstractmethod
    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        """Collect from `target` with validated `options`; raise CollectorError on failure."""

    def fingerprint(
        self, data: Mapping[str, Any], options: fp.FingerprintOptions, artifact: fp.ArtifactReader
    ) -> fp.Fingerprint:
        """The stable facts of a succeeded result, compared between runs of a schedule.

        The default digests all of `data`; a collector whose data holds what differs on
        every run (timings, TTLs) overrides it with named parts (README "Change detection").
        """
        return fp.data_fingerprint(self.name, data)

    def changed_parts(
        self, before: fp.Fingerprint, after: fp.Fingerprint, options: fp.FingerprintOptions
    ) -> list[str]:
        """The parts that changed between two fingerprints of the same kind."""
        return fp.changed_parts(before, after)

    def warm(self) -> None:  # noqa: B027 - optional hook
        """Start what the first job would otherwise wait for (called after the fork)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release pooled resources (connections, browsers)."""
