"""Follow a job until it is final: `collectq jobs watch` and `jobs submit --wait`.

Two ways, the same outcome (the final envelope, read with GET at the end):
- the event stream ``GET /v1/jobs/{id}/events`` (server-sent events: one event per
  collector change, then ``done``), resumed with ``Last-Event-ID`` when the connection
  breaks;
- long-polling ``GET /v1/jobs/{id}?wait=…``, comparing each envelope with the last one,
  when the service has no event stream (it answers 404 for it).

Each change goes to a `Board` (app/cli/progress.py), when one is given.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from app.cli.clienthttp import ApiClient, ApiProblem, Unreachable
from app.cli.progress import Board
from schemas.status import TERMINAL_COLLECTOR, TERMINAL_JOB

__all__ = ["POLL_WAIT", "follow", "stderr_board"]

POLL_WAIT = 1.0  # seconds per long-poll: how late a change shows at most
STREAM_TIMEOUT = 60.0  # no byte for this long (the server sends keep-alives): reconnect
RECONNECTS = 5  # in a row without an event, before giving up
DONE_EVENTS = frozenset({"done", "end"})

Show = Callable[[dict[str, Any]], None]


def stderr_board(names: list[str]) -> Board | None:
    """Progress of a waiting command (`--wait`): on stderr, only when it is a terminal
    (stdout keeps the envelope alone, for scripts)."""
    return Board(sys.stderr, names, live=True) if sys.stderr.isatty() else None


def follow(
    client: ApiClient, envelope: dict[str, Any], board: Board | None = None, *, stream: bool = True
) -> dict[str, Any]:
    """Wait for the job of `envelope` (as last read) to be final, showing its collectors'
    changes on `board`; return the final envelope. `ApiProblem` if the job cannot be
    read any more (404, 401…)."""
    try:
        return _follow(client, envelope, board, stream)
    finally:
        if board is not None:
            board.close()


def _follow(
    client: ApiClient, envelope: dict[str, Any], board: Board | None, stream: bool
) -> dict[str, Any]:
    path = f"/v1/jobs/{envelope['id']}"

    def show(results: dict[str, Any]) -> None:
        if board is not None:
            board.update(results)

    if envelope["status"] in TERMINAL_JOB:
        show(envelope["results"])
        return envelope
    if stream:
        # The stream starts with the job's whole history: replay it from "queued", so the
        # changes show in their order (the envelope read before may be ahead of it).
        results = {name: {"status": "queued", "attempts": 0} for name in envelope["collectors"]}
        if _follow_events(client, path, results, show):
            final: dict[str, Any] = client.call("GET", path)
            show(final["results"])
            return final
    show(envelope["results"])
    return _follow_polling(client, path, show)


def _follow_polling(client: ApiClient, path: str, show: Show) -> dict[str, Any]:
    while True:
        try:
            envelope: dict[str, Any] = client.call(
                "GET", path, query={"wait": POLL_WAIT}, timeout=POLL_WAIT + 30
            )
        except ApiProblem as exc:
            if exc.status != 429:  # too many waits of this key in flight: pause, go on
                raise
            time.sleep(float(exc.problem.get("retry_after") or POLL_WAIT))
            continue
        show(envelope["results"])
        if envelope["status"] in TERMINAL_JOB:
            return envelope


def _follow_events(client: ApiClient, path: str, results: dict[str, Any], show: Show) -> bool:
    """Follow the event stream until ``done``; False when the service has none (404) or
    no stream slot is free (429): then the caller long-polls."""
    last_id: str | None = None
    failures = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            for event in client.stream(path + "/events", headers, timeout=STREAM_TIMEOUT):
                failures = 0
                last_id = event.id or last_id
                if event.event in DONE_EVENTS:
                    return True
                if _apply(client, path, results, event.json()):
                    show(results)
            # closed without `done` (the stream's time is up): resume after the last event
        except ApiProblem as exc:
            if exc.status == 429 or (exc.status in (404, 405) and last_id is None):
                return False
            raise
        except (Unreachable, ValueError):
            failures += 1
            if failures > RECONNECTS:
                raise
        time.sleep(min(0.2 * 2**failures, 5.0))


def _apply(client: ApiClient, path: str, results: dict[str, Any], data: Any) -> bool:
    """Merge one ``state`` event (job_id, collector, status, attempt, at) into `results`.

    An event says no duration or error: for an outcome (or a retry) the collector's
    result is read from the job, when it is still at that state (a replayed old event
    keeps the event's own fields)."""
    if not isinstance(data, dict) or not isinstance(data.get("collector"), str):
        return False
    name, status = data["collector"], data.get("status")
    change: dict[str, Any] = {"status": status, "attempts": data.get("attempt")}
    if status == "running":
        change |= {"started_at": data.get("at"), "duration_ms": None, "error": None}
    elif status in TERMINAL_COLLECTOR or status == "retrying":
        current = client.call("GET", path)["results"].get(name) or {}
        if (current.get("status"), current.get("attempts")) == (status, change["attempts"]):
            change = current
    results[name] = {**results.get(name, {}), **change}
    return True
