"""Discover collectors from the ``collectq.collectors`` entry-point group.

Built-ins register through the same group as third-party plugins. A plugin
that fails to import, or whose dependency is missing, is kept as *unavailable*
with its reason, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from collectors.base import Collector, CollectorError

__all__ = ["ENTRY_POINT_GROUP", "CollectorInfo", "Registry", "load_registry"]

ENTRY_POINT_GROUP = "collectq.collectors"


@dataclass
class CollectorInfo:
    name: str
    collector: Collector | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.collector is not None and self.reason is None


class Registry:
    """Collectors by name; one instance per process."""

    def __init__(self, infos: Iterable[CollectorInfo]) -> None:
        self._infos = {info.name: info for info in infos}

    def names(self) -> list[str]:
        return sorted(self._infos)

    def available_names(self) -> list[str]:
        return [n for n in self.names() if self._infos[n].available]

    def info(self, name: str) -> CollectorInfo | None:
        return self._infos.get(name)

    def infos(self) -> list[CollectorInfo]:
        return [self._infos[n] for n in self.names()]

    def get(self, name: str) -> Collector:
        """The collector `name`; KeyError if unknown or unavailable."""
        info = self._infos.get(name)
        if info is None or info.collector is None or info.reason is not None:
            raise KeyError(name)
        return info.collector

    def close(self) -> None:
        for info in self._infos.values():
            if info.collector is not None:
                info.collector.close()


def _load_one(ep: EntryPoint, kwargs: Mapping[str, Any]) -> CollectorInfo:
    try:
        cls = ep.load()
        collector = cls(**kwargs)
        if not isinstance(collector, Collector):
            return CollectorInfo(ep.name, None, f"{ep.value} is not a Collector")
    except CollectorError as exc:
        return CollectorInfo(ep.name, None, exc.detail)
    except Exception as exc:  # a broken plugin must not take the service down
        return CollectorInfo(ep.name, None, f"failed to load {ep.value}: {exc}")
    try:
        collector.check_available()
    except CollectorError as exc:  # kept, so its schemas can still be shown
        return CollectorInfo(ep.name, collector, exc.detail)
    except Exception as exc:
        return CollectorInfo(ep.name, collector, f"availability check failed: {exc}")
    return CollectorInfo(ep.name, collector)


def load_registry(
    plugins: Iterable[str] = (), config: Mapping[str, Mapping[str, Any]] | None = None
) -> Registry:
    """Load every installed collector, plus `plugins` given as ``name=module:Class``.

    `plugins` lets a deployment (or the benchmark's no-op collector) add a
    collector without packaging it; the entry point wins on a name clash.
    `config` maps a collector name to the keyword arguments of its constructor.
    """
    config = config or {}
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for spec in plugins:
        name, _, value = spec.partition("=")
        found.setdefault(name.strip(), EntryPoint(name.strip(), value.strip(), ENTRY_POINT_GROUP))
    return Registry(_load_one(ep, config.get(name, {})) for name, ep in found.items())
