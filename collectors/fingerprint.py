"""Fingerprints of collector results: what change detection compares between runs.

A fingerprint is a small JSON-able record of the *stable* facts of one result, in named
parts (http: status, final URL, body sha256; dns: the sorted answers per type; ...), so
that two runs can say which parts changed. Timings, TTLs, attempt counts and the like
are left out: they differ on every run and are not the content. Each collector
builds its own (`Collector.fingerprint`); this module holds the type, the default for
collectors that do not override it, the comparison, the compact diff and the image
hash of the screenshot collector's perceptual mode. Pure: no Flask, Celery or Redis.

Two fingerprints are comparable only when their `kind` is the same (e.g.
`screenshot/exact` vs `screenshot/perceptual`: switching the mode resets the baseline
instead of reporting a change).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from math import isqrt
from typing import Any

from schemas.changes import DEFAULT_SCREENSHOT_THRESHOLD, DHASH_BITS

__all__ = [
    "DEFAULT_THRESHOLD",
    "DHASH_BITS",
    "MAX_DIFF_ITEMS",
    "MAX_VALUE_CHARS",
    "ArtifactReader",
    "Fingerprint",
    "FingerprintOptions",
    "changed_parts",
    "compact",
    "data_fingerprint",
    "dhash",
    "diff_entry",
    "hamming",
    "perceptual_available",
]

# What a fingerprint reads an artifact's bytes with (None: the artifact is gone).
ArtifactReader = Callable[[str], bytes | None]

MAX_VALUE_CHARS = 200  # a string in a diff is cut here
MAX_DIFF_ITEMS = 20  # a list in a diff keeps this many items
DHASH_SIZE = isqrt(DHASH_BITS)  # the perceptual hash compares a 16×16 grid of gradients
DEFAULT_THRESHOLD = DEFAULT_SCREENSHOT_THRESHOLD


@dataclass(frozen=True)
class FingerprintOptions:
    """Per-schedule choices (the schedule's `change_detection`); defaults compare exactly."""

    screenshot_hash: str = "exact"  # exact | perceptual
    screenshot_threshold: int = DEFAULT_THRESHOLD  # perceptual: bits that may differ
    http_headers: tuple[str, ...] = ()  # response headers that count as content

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FingerprintOptions:
        if not values:
            return cls()
        return cls(
            screenshot_hash=str(values.get("screenshot_hash") or "exact"),
            screenshot_threshold=int(values.get("screenshot_threshold", DEFAULT_THRESHOLD)),
            http_headers=tuple(h.lower() for h in values.get("http_headers") or ()),
        )


@dataclass(frozen=True)
class Fingerprint:
    """Named parts of one result; `digest` says at a glance whether anything differs."""

    kind: str
    parts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return _sha256_json({"kind": self.kind, "parts": dict(self.parts)})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "parts": dict(self.parts), "digest": self.digest}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Fingerprint:
        return cls(str(value["kind"]), dict(value.get("parts") or {}))


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def data_fingerprint(name: str, data: Mapping[str, Any]) -> Fingerprint:
    """The default: all of the result data, as one digest (a plugin may do better)."""
    return Fingerprint(f"{name}/data", {"data_sha256": _sha256_json(dict(data))})


def changed_parts(before: Fingerprint, after: Fingerprint) -> list[str]:
    """The parts whose values differ (a part on one side only counts as changed)."""
    names = sorted(set(before.parts) | set(after.parts))
    return [n for n in names if before.parts.get(n) != after.parts.get(n)]


def compact(value: Any) -> Any:
    """`value` small enough for a diff: strings cut, lists shortened, nesting flattened."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, Sequence):
        items = [compact(v) for v in value[:MAX_DIFF_ITEMS]]
        if len(value) > MAX_DIFF_ITEMS:
            items.append(f"… {len(value) - MAX_DIFF_ITEMS} more")
        return items
    return compact(json.dumps(value, sort_keys=True, default=str))


def diff_entry(collector: str, part: str, before: Any, after: Any) -> dict[str, Any]:
    """One line of a change's diff; a list part also says what was added and removed."""
    entry: dict[str, Any] = {
        "collector": collector,
        "part": part,
        "before": compact(before),
        "after": compact(after),
    }
    if isinstance(before, list) and isinstance(after, list):
        old = {json.dumps(v, sort_keys=True) for v in before}
        new = {json.dumps(v, sort_keys=True) for v in after}
        entry["added"] = compact([json.loads(v) for v in sorted(new - old)])
        entry["removed"] = compact([json.loads(v) for v in sorted(old - new)])
    return entry


def perceptual_available() -> bool:
    """Pillow is optional (a dev dependency): without it screenshots compare exactly."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def dhash(image: bytes) -> str:
    """Difference hash of an image: DHASH_BITS bits as hex (needs Pillow).

    The image is shrunk to (DHASH_SIZE+1)×DHASH_SIZE grey pixels and each bit says
    whether a pixel is brighter than its right neighbour: re-encoding, scaling and
    anti-aliasing leave it nearly unchanged; changed text or layout flips bits.
    Raises OSError or ValueError for bytes that are not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image)) as img:
            grey = img.convert("L").resize((DHASH_SIZE + 1, DHASH_SIZE), Image.Resampling.LANCZOS)
            px = grey.tobytes()  # one byte per grey pixel, row by row
    except Image.DecompressionBombError as exc:
        raise ValueError(str(exc)) from exc
    bits = 0
    for row in range(DHASH_SIZE):
        for col in range(DHASH_SIZE):
            left = px[row * (DHASH_SIZE + 1) + col]
            right = px[row * (DHASH_SIZE + 1) + col + 1]
            bits = (bits << 1) | (1 if left > right else 0)
    return f"{bits:0{DHASH_BITS // 4}x}"


def hamming(a: str, b: str) -> int:
    """Differing bits of two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
