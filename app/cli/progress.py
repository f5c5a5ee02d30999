"""Progress of a job's collectors on a terminal: `collectq collect` and the client's
`jobs watch` / `jobs submit --wait` draw the same lines.

``[1/3] http  running…`` while a collector runs, then ``[1/3] http  succeeded  0.21 s``
(a retry adds ``attempt 2``, a failure its error). `TerminalProgress` rewrites one line at
a time (collectors run one after the other in `collect`); `Board` keeps one live line per
collector (they run in parallel on the workers) and, when not on a terminal, prints a
plain line for each change instead.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

__all__ = ["Board", "Progress", "TerminalProgress", "progress_line"]

DETAIL_CHARS = 80  # of a failed collector's error detail, on its progress line


class Progress(Protocol):
    def started(self, index: int, name: str) -> None: ...
    def finished(self, index: int, name: str, result: Mapping[str, Any]) -> None: ...


def progress_line(
    index: int, total: int, name: str, width: int, result: Mapping[str, Any] | None = None
) -> str:
    """``[1/3] http  running…``, or with its `result`: ``[1/3] http  succeeded  0.21 s``
    (a result without a duration yet shows none; a second attempt adds ``attempt 2``;
    an error adds its type and the start of its detail)."""
    head = f"[{index}/{total}] {name:<{width}}"
    if result is None:
        return f"{head}  running…"
    line = f"{head}  {result['status']:<9}"
    ms = result.get("duration_ms")
    if ms is not None:
        line += f"  {ms / 1000:.2f} s"
    if (result.get("attempts") or 0) > 1:
        line += f"  attempt {result['attempts']}"
    error = result.get("error")
    if error:
        detail = str(error.get("detail") or "")
        if len(detail) > DETAIL_CHARS:
            detail = detail[: DETAIL_CHARS - 1] + "…"
        line += f"  {error.get('type')}: {detail}"
    return line.rstrip()


class TerminalProgress:
    """Progress on a terminal: the running line is rewritten in place with the outcome."""

    def __init__(self, out: TextIO, names: list[str]) -> None:
        self.out = out
        self.total = len(names)
        self.width = max((len(n) for n in names), default=0)

    def started(self, index: int, name: str) -> None:
        self._write(progress_line(index, self.total, name, self.width))

    def finished(self, index: int, name: str, result: Mapping[str, Any]) -> None:
        # \r and erase-line: the outcome replaces the running line
        line = progress_line(index, self.total, name, self.width, result)
        self._write(f"\r\x1b[K{line}\n")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _running_since(result: Mapping[str, Any]) -> float | None:
    """Milliseconds since a running collector started (None when not running)."""
    if result.get("status") != "running" or result.get("duration_ms") is not None:
        return None
    try:
        started = datetime.fromisoformat(str(result.get("started_at")))
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - started).total_seconds() * 1000)


class Board:
    """One line per collector of a job, kept up to date as its results change.

    On a terminal (`live`), the block of lines is redrawn in place; otherwise each
    change (status or attempt) is printed once as a plain line, so a log or a pipe
    reads as the list of transitions.
    """

    TICK = 0.5  # seconds between redraws of a running collector's count on a terminal

    def __init__(self, out: TextIO, names: list[str], *, live: bool) -> None:
        self.out = out
        self.names = list(names)
        self.live = live
        self.width = max((len(n) for n in names), default=0)
        self._lines: dict[str, str] = {}
        self._shown: dict[str, tuple[Any, Any]] = {}
        self._drawn = 0
        self._latest: Mapping[str, Mapping[str, Any]] = {}
        self._lock = threading.RLock()  # the ticker thread redraws too
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def update(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Show `results` (collector name → its result, as in the envelope)."""
        with self._lock:
            self._latest = {name: dict(result) for name, result in results.items()}
            self._update(self._latest)
        if self.live and self._ticker is None:
            # between two changes (an event stream is quiet while a collector runs)
            self._ticker = threading.Thread(target=self._tick, name="board", daemon=True)
            self._ticker.start()

    def close(self) -> None:
        """Stop redrawing (the job is final)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK):
            with self._lock:
                self._update(self._latest)

    def _update(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        changed = False
        for index, name in enumerate(self.names, 1):
            result = results.get(name)
            if result is None:
                continue
            state = (result.get("status"), result.get("attempts"))
            ticking = self.live and _running_since(result) is not None
            if self._shown.get(name) == state and not ticking:
                continue
            if self._shown.get(name) != state and not self.live:
                self.out.write(progress_line(index, len(self.names), name, self.width, result))
                self.out.write("\n")
            self._shown[name] = state
            shown = result
            if ticking:  # a running collector's line counts its seconds on a terminal
                shown = {**result, "duration_ms": _running_since(result)}
            self._lines[name] = progress_line(index, len(self.names), name, self.width, shown)
            changed = True
        if changed and self.live:
            self._redraw()
        self.out.flush()

    def say(self, text: str) -> None:
        """A line of its own below the board (the job's outcome)."""
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()
            self._drawn = 0  # the board stays above, as it is

    def _redraw(self) -> None:
        # back to the board's first line (ESC [ n F), then each line erased and rewritten
        text = f"\x1b[{self._drawn}F" if self._drawn else ""
        # a line wider than the terminal wraps, and the block would no longer be n lines
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = [self._lines.get(n, "")[:width] for n in self.names]
        text += "".join(f"\x1b[K{line}\n" for line in lines)
        self.out.write(text)
        self._drawn = len(lines)
