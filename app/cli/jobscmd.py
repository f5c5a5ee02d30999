"""`collectq jobs submit|get|list|cancel|watch`: jobs of a running service, over its
public HTTP API (never its Redis), printing the API's own JSON."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from app.cli.client import ClientGroup, emit, exit_code_for, get_client, url_option
from app.cli.jobargs import (
    job_request_options,
    parse_collectors,
    parse_duration,
    parse_labels,
    parse_options,
)
from app.cli.jobwatch import follow, stderr_board
from app.cli.progress import Board
from schemas.status import JobStatus

__all__ = ["jobs"]


@click.group(cls=ClientGroup)
@url_option
def jobs(url: str | None) -> None:
    """Jobs of a running service ($COLLECTQ_URL, key from $COLLECTQ_API_KEY or the
    config file; see README "Command-line client")."""


@jobs.command("submit")
@job_request_options
@click.option("--idempotency-key", help="a repeat with the same key returns the first job")
@click.option(
    "--max-age",
    metavar="DURATION",
    help="reuse your identical job of at most this age (e.g. 10m) instead of collecting again",
)
@click.option("--fresh", is_flag=True, help="a new job even while an identical one of yours runs")
@click.option("--callback-url", help="POSTed the envelope when the job ends (a webhook)")
@click.option("--callback-on", metavar="always|failure", help="when to call back (default always)")
@click.option(
    "--callback-artifacts",
    type=click.Choice(["links", "inline"]),
    help="artifacts in the webhook as links (default) or inline base64",
)
@click.option("--wait", is_flag=True, help="wait until the job is final; exit 0/1/2 by status")
@click.option("-q", "--quiet", is_flag=True, help="print only the job id")
@click.pass_context
def submit(
    ctx: click.Context,
    target: str,
    collectors: str,
    opts: tuple[str, ...],
    labels: tuple[str, ...],
    idempotency_key: str | None,
    max_age: str | None,
    fresh: bool,
    callback_url: str | None,
    callback_on: str | None,
    callback_artifacts: str | None,
    wait: bool,
    quiet: bool,
) -> None:
    """Submit a job and print its envelope (with --wait: the final one).

    With --wait the exit code says how it ended: 0 succeeded, 1 failed, 2 partial,
    cancelled or expired. On a terminal, --wait shows each collector's progress on stderr.
    """
    body: dict[str, Any] = {
        "target": target,
        "collectors": parse_collectors(collectors),
        "options": parse_options(opts),
        "labels": parse_labels(labels),
    }
    if max_age is not None:
        body["max_age"] = parse_duration(max_age)
    if fresh:
        body["fresh"] = True
    if callback_url:
        body["callback_url"] = callback_url
    if callback_on:
        body["callback_on"] = [w.strip() for w in callback_on.split(",") if w.strip()]
    if callback_artifacts:
        body["callback_artifacts"] = callback_artifacts
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    client = get_client(ctx)
    envelope = client.call("POST", "/v1/jobs", body, headers=headers)
    if wait:
        envelope = follow(client, envelope, stderr_board(envelope["collectors"]))
    if quiet:
        click.echo(envelope["id"])
    else:
        emit(envelope)
    if wait:
        ctx.exit(exit_code_for(envelope["status"]))


@jobs.command("get")
@click.argument("job_id")
@click.option("--wait", "wait", type=float, default=0, help="wait up to N s for a final state")
@click.pass_context
def get(ctx: click.Context, job_id: str, wait: float) -> None:
    """Print a job's envelope."""
    emit(get_client(ctx).call("GET", f"/v1/jobs/{job_id}", query={"wait": wait or None}))


@jobs.command("list")
@click.option("--status", type=click.Choice(list(JobStatus)))
@click.option("--collector")
@click.option("--label", metavar="KEY=VALUE")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page")
@click.option("--json", "as_json", is_flag=True, help="the API's page (items, next_cursor)")
@click.pass_context
def list_jobs(
    ctx: click.Context,
    status: str | None,
    collector: str | None,
    label: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first: a table, or with --json the API's page."""
    query = {
        "status": status,
        "collector": collector,
        "label": label,
        "limit": limit,
        "cursor": cursor,
    }
    page = get_client(ctx).call("GET", "/v1/jobs", query=query)
    if as_json:
        emit(page)
        return
    click.echo(f"{'ID':<29}{'STATUS':<11}{'CREATED':<22}{'COLLECTORS':<22}TARGET")
    for env in page["items"]:
        click.echo(
            f"{env['id']:<29}{env['status']:<11}{env['created_at'][:19]:<22}"
            f"{','.join(env['collectors'])[:21]:<22}{env['target']}"
        )
    if page.get("next_cursor"):
        click.echo(f"(more: --cursor {page['next_cursor']})", err=True)


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job (queued work is skipped, running work revoked); print its envelope."""
    emit(get_client(ctx).call("DELETE", f"/v1/jobs/{job_id}"))


@jobs.command("watch")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="then print the final envelope")
@click.option("--poll", is_flag=True, help="long-poll instead of the event stream")
@click.pass_context
def watch(ctx: click.Context, job_id: str, as_json: bool, poll: bool) -> None:
    """Follow a job until it ends: a live line per collector on a terminal, a plain line
    per change otherwise. Exit code as `submit --wait` (0 succeeded, 1 failed, 2 other)."""
    client = get_client(ctx)
    first = client.call("GET", f"/v1/jobs/{job_id}")
    out = sys.stdout
    board = Board(out, first["collectors"], live=out.isatty())
    board.say(f"{first['id']}  {first['target']}")
    envelope = follow(client, first, board, stream=not poll)
    took = ""
    if envelope.get("started_at") and envelope.get("finished_at"):
        took = f" ({_seconds(envelope['started_at'], envelope['finished_at']):.2f} s)"
    board.say(f"{envelope['id']}  {envelope['status']}{took}")
    if as_json:
        emit(envelope)
    ctx.exit(exit_code_for(envelope["status"]))


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
