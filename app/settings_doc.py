"""The README's settings tables, rendered from the declarations in `app.options`.

`collectq config table --readme README.md` rewrites them between their markers; a
unit test fails when the README and the declarations differ.
"""

from __future__ import annotations

from app.options import (
    POLICY_DEFAULTS,
    POLICY_REASONS,
    POOL_DEFAULTS,
    PREFIX,
    PROFILES,
    Setting,
    declared,
    env_text,
)

__all__ = [
    "POLICY_TABLE_END",
    "POLICY_TABLE_START",
    "POOL_TABLE_END",
    "POOL_TABLE_START",
    "TABLE_END",
    "TABLE_START",
    "policy_table_markdown",
    "pool_table_markdown",
    "settings_table_markdown",
    "with_settings_table",
]

TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"
POOL_TABLE_START = "<!-- pool-table:start -->"
POOL_TABLE_END = "<!-- pool-table:end -->"
POLICY_TABLE_START = "<!-- policy-table:start -->"
POLICY_TABLE_END = "<!-- policy-table:end -->"


def _doc_default(s: Setting) -> str:
    if s.option.doc_default is not None:
        return s.option.doc_default
    groups: dict[str, list[str]] = {}
    for profile in PROFILES:
        value = s.default_in(profile)
        if value not in (None, "", ()):
            shown = f"`{env_text(s.kind, value)}`"
        elif profile in s.option.required:
            shown = "required"
        else:
            shown = "—"
        groups.setdefault(shown, []).append(profile)
    if len(groups) == 1:
        return next(iter(groups))
    parts = []
    for shown, profiles in groups.items():
        where = "/".join(profiles)
        parts.append(f"required in {where}" if shown == "required" else f"{shown} ({where})")
    return "; ".join(parts)


def settings_table_markdown() -> str:
    """The README's table of settings (variable | default | meaning)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in declared():
        meaning = ("secret; " if s.option.secret else "") + s.option.help
        if s.option.choices:
            meaning += "; one of " + ", ".join(f"`{c}`" for c in s.option.choices)
        rows.append(f"| `{s.var.removeprefix(PREFIX)}` | {_doc_default(s)} | {meaning} |")
    return "\n".join(rows) + "\n"


def pool_table_markdown() -> str:
    """The README's table of the built-in worker settings per collector (`POOL_<NAME>`)."""
    rows = [
        "| collector | pool | concurrency | prefetch | soft / hard time limit (s) |",
        "|---|---|---|---|---|",
    ]
    for name, p in POOL_DEFAULTS.items():
        limits = f"{p.soft_time_limit} / {p.hard_time_limit}"
        rows.append(f"| `{name}` | {p.pool} | {p.concurrency} | {p.prefetch} | {limits} |")
    return "\n".join(rows) + "\n"


def policy_table_markdown() -> str:
    """The README's table of the built-in collector policies (`POLICY_<NAME>`) and why."""
    rows = [
        "| collector | retries | backoff base / max (s) | breaker: failures, open (s) "
        "| per-host cap | why |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in POLICY_DEFAULTS.items():
        cap = p.host_concurrency or "none"
        rows.append(
            f"| `{name}` | {p.retries} | {p.backoff_base:g} / {p.backoff_max:g} "
            f"| {p.breaker_fail_max}, {p.breaker_reset_timeout:g} | {cap} "
            f"| {POLICY_REASONS[name]} |"
        )
    return "\n".join(rows) + "\n"


def _fill(text: str, start: str, end: str, table: str) -> str:
    head, found_start, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not found_start or not found_end:
        raise ValueError(f"no {start} … {end} markers")
    return f"{head}{found_start}\n{table}{found_end}{tail}"


def with_settings_table(text: str) -> str:
    """`text` (the README) with the tables between their markers regenerated."""
    text = _fill(text, TABLE_START, TABLE_END, settings_table_markdown())
    text = _fill(text, POOL_TABLE_START, POOL_TABLE_END, pool_table_markdown())
    return _fill(text, POLICY_TABLE_START, POLICY_TABLE_END, policy_table_markdown())
