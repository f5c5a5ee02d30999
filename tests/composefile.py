"""docker-compose.yml as compose reads it with nothing set in the environment: each
``${NAME:-default}`` / ``${NAME-default}`` becomes its default, ``${NAME}`` empty, ``$$`` a
dollar (the compose specification's interpolation), for tests that check the file without
a compose binary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["COMPOSE", "load_compose"]

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}")


def _default(match: re.Match[str]) -> str:
    if match.group(0) == "$$":
        return "$"
    return match.group(2) or ""


def _interpolate(node: Any) -> Any:
    # like compose: on the parsed values, so "${X:-}" is an empty string, not a YAML null
    if isinstance(node, str):
        return _VAR.sub(_default, node)
    if isinstance(node, dict):
        return {key: _interpolate(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value) for value in node]
    return node


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    """The compose file, interpolated with an empty environment."""
    data = _interpolate(yaml.safe_load(path.read_text()))
    assert isinstance(data, dict)
    return data
