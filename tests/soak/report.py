"""The soak's report: `soak.md` (parameters, tables, faults, checks) and `soak.png`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.soak.checks import Check, Window
from tests.soak.faults import Fault
from tests.soak.sampler import Sample

__all__ = ["Outcome", "plot", "write_markdown"]


@dataclass
class Outcome:
    """Everything the report shows."""

    params: dict[str, Any]
    jobs: dict[str, Any]
    load: dict[str, int]
    faults: list[Fault]
    checks: list[Check]
    leak: tuple[Window, Window, list[dict[str, Any]]]
    redis: tuple[Window, Window, dict[str, tuple[float | None, float | None, float | None]]]
    reaper: dict[str, int]
    breakers: dict[str, dict[str, int]]
    drain_s: float
    samples: list[Sample]
    census: dict[str, dict[str, int]]  # role → its open fds by kind, at the end

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def _table(head: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _mib(v: float | None) -> str:
    return "—" if v is None else f"{v / 2**20:.1f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1%}"


def results_table(o: Outcome) -> list[str]:
    j = o.jobs
    return _table(
        ("accepted", "terminal", "lost", "duplicated", "stuck", "reaper requeued", "faults",
         "drain (s)", "verdict"),
        [(j["accepted"], j["terminal"], j["lost"], j["duplicated"], j["stuck"],
          j["reaper_requeued"], len(o.faults), f"{o.drain_s:.1f}",
          "PASS" if o.passed else "FAIL")],
    )  # fmt: skip


def write_markdown(o: Outcome, path: Path, png_name: str) -> None:
    p, j = o.params, o.jobs
    lines = [
        "# Chaos soak report",
        "",
        f'Written by `{p["command"]}` at {p["finished_at"]} (issue 17; README "Soak").',
        "",
        "## Parameters",
        "",
        *_table(("parameter", "value"), [(k, f"`{v}`") for k, v in p.items() if k != "command"]),
        "",
        "## Results",
        "",
        *results_table(o),
        "",
        f"Job statuses: {j['statuses']}. Collectors by attempts: {j['attempts']}.",
        "",
        f"By kind of request: {j['by_kind']}.",
        "",
        f"Collector errors of failed jobs (type: count): {j['errors'] or 'none'}.",
        "",
        f"Load (client side): {dict(sorted(o.load.items()))}.",
        "",
        f"![throughput, queue depth and RSS per role over time, faults marked]({png_name})",
        "",
        "## Faults",
        "",
        *_table(
            ("at (s)", "fault", "target", "remedy took (s)", "note"),
            [(f"{f.at:.1f}", f.kind, f.target, f"{f.took:.1f}", f.note or "") for f in o.faults],
        ),
        "",
        "## Checks",
        "",
        *_table(
            ("check", "result", "detail"),
            [(c.name, "pass" if c.ok else "**FAIL**", c.detail) for c in o.checks],
        ),
        "",
        "## Processes (RSS and open fds per role, medians)",
        "",
        f"Warm-up window {o.leak[0]}, last window {o.leak[1]} (seconds of load).",
        "",
        *_table(
            (
                "role",
                "RSS warm-up (MiB)",
                "RSS last (MiB)",
                "growth",
                "fds warm-up",
                "fds last",
                "growth",
            ),
            [
                (
                    r["role"],
                    _mib(r["rss"][0]),
                    _mib(r["rss"][1]),
                    _pct(r["rss"][2]),
                    _num(r["fds"][0]),
                    _num(r["fds"][1]),
                    _pct(r["fds"][2]),
                )
                for r in o.leak[2]
            ],
        ),  # fmt: skip
        "",
        "Open fds per role at the end, by what they are:",
        "",
        *_table(
            ("role", "fds"), [(r, dict(sorted(c.items()))) for r, c in sorted(o.census.items())]
        ),
        "",
        "## Redis",
        "",
        f"First window after the retention horizon {o.redis[0]}, last window {o.redis[1]}.",
        "",
        *_table(
            ("measure", "after horizon", "last", "growth"),
            [(name, _num(a), _num(b), _pct(g)) for name, (a, b, g) in o.redis[2].items()],
        ),
        "",
        "## Reaper and breakers",
        "",
        f"Reaper (from its workers' `reaper acted` log lines): {o.reaper}.",
        "",
        "Breakers opened and closed, as the sampler saw them (per origin; a lower bound):",
        "",
        *_table(
            ("origin", "changes"),
            [(origin, changes) for origin, changes in sorted(o.breakers.items())]
            or [("—", "none")],
        ),
        "",
    ]
    path.write_text("\n".join(lines))


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


RATE_WINDOW = 15.0


def _rate(samples: list[Sample], window: float) -> list[float]:
    """Jobs completed per second over the `window` seconds before each sample."""
    out, j = [], 0
    for s in samples:
        while samples[j].t < s.t - window:
            j += 1
        first = samples[j]
        out.append((s.completed - first.completed) / max(s.t - first.t, 1e-6))
    return out


def plot(samples: list[Sample], faults: list[Fault], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, (ax1, ax2, ax3, ax4) = plt.subplots(4, 1, figsize=(12, 13), sharex=True)
    ax1.plot(t, _rate(samples, RATE_WINDOW), lw=1)
    ax1.set_ylabel(f"jobs/s completed ({RATE_WINDOW:.0f} s window)")
    queues = sorted({q for s in samples for q in s.depths})
    for q in queues:
        ax2.plot(t, [s.depths.get(q) for s in samples], lw=1, label=q)
    ax2.set_ylabel("ready messages")
    ax2.legend(fontsize=7, ncol=3, loc="upper left")
    roles = sorted({r for s in samples for r in s.rss})
    for r in roles:
        # a role not running at a sample (killed, restarting) is a gap, not a zero
        ax3.plot(t, [s.rss.get(r, math.nan) / 2**20 for s in samples], lw=1, label=r)
    ax3.set_ylabel("RSS (MiB, log)")
    ax3.set_yscale("log")
    for r in roles:
        ax4.plot(t, [s.fds.get(r, math.nan) for s in samples], lw=1, label=r)
    ax4.set_ylabel("open fds (log)")
    ax4.set_yscale("log")
    ax4.set_xlabel("seconds")
    ax3.legend(fontsize=7, ncol=4, loc="upper left")
    for f in faults:
        for ax in (ax1, ax2, ax3, ax4):
            ax.axvline(f.at, color="red", lw=0.8, ls="--")
        ax1.annotate(f"{f.kind} {f.target}", (f.at, 1), xycoords=("data", "axes fraction"),
                     rotation=90, fontsize=6, va="top", ha="right", color="red")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
