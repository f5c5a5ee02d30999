"""Command-line parts of a job request, shared by `collectq collect` (in-process) and
`collectq jobs submit` / `collectq schedules create` (over HTTP), and durations (`keys`,
`schedules`): one reading of each."""

from __future__ import annotations

import json
import re
from typing import Any

import click

__all__ = [
    "job_request_options",
    "parse_collectors",
    "parse_duration",
    "parse_labels",
    "parse_options",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_collectors(text: str) -> list[str]:
    """``http, dns`` → ``["http", "dns"]``."""
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_options(opts: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """``-o collector.key=value`` options → ``{collector: {key: value}}``; the value is
    JSON when it parses as JSON (numbers, booleans, objects), else the text itself."""
    options: dict[str, dict[str, Any]] = {}
    for opt in opts:
        key, sep, raw = opt.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot:
            raise click.BadParameter(f"{opt!r}: use collector.key=value", param_hint="--option")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        options.setdefault(name, {})[field] = value
    return options


def parse_labels(labels: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--label k=v`` (repeatable) → ``{k: v}``; the server checks the keys and values."""
    out: dict[str, str] = {}
    for spec in labels:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{spec!r}: use key=value", param_hint="--label")
        out[key] = value
    return out


def parse_duration(text: str) -> int:
    """`90`, `90s`, `15m`, `12h`, `30d`, `2w` → seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if m is None:
        raise click.BadParameter(f"{text!r}: use a number with s, m, h, d or w")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def job_request_options(command: Any) -> Any:
    """The job a command submits: TARGET, -c collectors, -o options, --label (the client's
    `jobs submit` and `schedules create`)."""
    for decorator in reversed(
        (
            click.argument("target"),
            click.option(
                "-c", "--collectors", default="http", show_default=True, help="comma-separated"
            ),
            click.option(
                "-o",
                "--option",
                "opts",
                multiple=True,
                help="collector.key=value (value is JSON or text)",
            ),
            click.option(
                "--label", "labels", multiple=True, metavar="KEY=VALUE", help="repeatable"
            ),
        )
    ):
        command = decorator(command)
    return command
