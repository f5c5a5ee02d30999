"""What `collectq up` shows on its terminal, and where the rest of its children's output goes.

Each child's stdout and stderr go through one pipe to a reader thread that writes every
line to ``.collectq/logs/<role>.log`` and echoes to the terminal, prefixed with the role
(``worker http | ...``, as honcho and foreman do), only what needs a reader: records at
WARNING and above with their continuation lines (a traceback), Python warnings, tracebacks
and the CLI's own complaints (``collectq: ...``). The terminal stays quiet; nothing that
matters is hidden. The reader threads never block a child: they drain its pipe whatever
the terminal does.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "ChildLog",
    "EchoFilter",
    "line_level",
    "log_file",
    "render_banner",
    "rotate_logs",
    "terminal",
]

LOUD = frozenset({"WARNING", "ERROR", "CRITICAL"})
_LEVELS = {"WARN": "WARNING", "FATAL": "CRITICAL", "EXCEPTION": "ERROR"}
_JSON_LEVEL = re.compile(r'"(?:level|levelname)":\s*"(\w+)"')
_WORD_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
# gunicorn's access log (common log format): a record of its own, at INFO
_ACCESS = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "')
# records that carry no level word but always need a reader
_ALERTS = (
    (re.compile(r"^Traceback \(most recent call last\)"), "ERROR"),
    (re.compile(r"^collectq(?: up)?: "), "WARNING"),  # the CLI's refusals and notices
    (re.compile(r"^\S+:\d+: \w*Warning: "), "WARNING"),  # Python's warnings module
)

# Celery's "<node> ready." once a worker consumes (text and JSON lines alike)
_WORKER_READY = re.compile(r"@[^\s@]+ ready\.")  # linear: no two greedy runs to backtrack

_terminal_lock = threading.Lock()


def line_level(line: str) -> str | None:
    """The level a line announces as the start of a record (INFO, WARNING...), or None for
    a line that continues the record before it (a traceback's lines, a long message)."""
    if line.startswith("{"):
        found = _JSON_LEVEL.search(line)
        if found:
            level = found.group(1).upper()
            return _LEVELS.get(level, level)
    for pattern, level in _ALERTS:
        if pattern.search(line):
            return level
    if _ACCESS.search(line):
        return "INFO"
    word = _WORD_LEVEL.search(line)
    return _LEVELS.get(word.group(1), word.group(1)) if word else None


class EchoFilter:
    """Decides, line by line, what of one child's output reaches the terminal: a record
    at WARNING or above and the lines that continue it; nothing from a quieter record."""

    def __init__(self) -> None:
        self._echo = False

    def __call__(self, line: str) -> bool:
        level = line_level(line)
        if level is not None:
            self._echo = level in LOUD
        return self._echo


def terminal(text: str) -> None:
    """Write whole lines to the terminal (stderr); one writer at a time."""
    with _terminal_lock:
        try:
            sys.stderr.write(text if text.endswith("\n") else f"{text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the reader that drains a child's pipe


def log_file(log_dir: Path, role: str) -> Path:
    """``worker http`` → ``<log_dir>/worker-http.log``."""
    return log_dir / f"{role.replace(' ', '-')}.log"


def rotate_logs(log_dir: Path, roles: Sequence[str]) -> None:
    """Keep the previous run's log of each role as ``<role>.log.1`` (one run back)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for role in roles:
        path = log_file(log_dir, role)
        if path.exists():
            path.replace(path.with_name(f"{path.name}.1"))


class ChildLog:
    """One child's log file, and the prefix its echoed lines carry on the terminal."""

    def __init__(self, role: str, log_dir: Path, width: int) -> None:
        self.role = role
        self.path = log_file(log_dir, role)
        self.prefix = f"{role:<{width}} | "
        self.worker_ready = threading.Event()  # the child said it is a ready Celery worker
        self._threads: list[threading.Thread] = []

    def follow(self, stream: IO[bytes]) -> None:
        """Drain `stream` (a started child's stdout+stderr) in a thread until it closes."""
        thread = threading.Thread(
            target=self._drain, args=(stream,), name=f"up-log {self.role}", daemon=True
        )
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _drain(self, stream: IO[bytes]) -> None:
        echo = EchoFilter()
        with stream, self.path.open("ab", buffering=0) as out:
            for raw in iter(stream.readline, b""):
                out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not self.worker_ready.is_set() and _WORKER_READY.search(line):
                    self.worker_ready.set()
                if echo(line):
                    terminal(f"{self.prefix}{line}")

    def join(self, timeout: float) -> None:
        """Wait (bounded) for the readers: a child's children may hold the pipe open."""
        for thread in self._threads:
            thread.join(timeout)

    def tail(self, lines: int = 5) -> list[str]:
        """The last lines of the log (for a child that exited), prefixed with its role."""
        try:
            with self.path.open("rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [f"{self.prefix}{line}" for line in text.splitlines()[-lines:]]


def render_banner(headline: str, rows: Sequence[tuple[str, str]]) -> str:
    """The banner `collectq up` prints once the service answers: a headline, then one
    aligned ``name  value`` row per fact."""
    width = max((len(name) for name, _ in rows), default=0)
    body = [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join([headline, *body]) + "\n"
