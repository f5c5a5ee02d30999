"""`collectq schedules create|list|get|pause|resume|run|runs|delete`: scheduled
collections of a running service, over its public HTTP API (/v1/schedules)."""

from __future__ import annotations

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

__all__ = ["callback_on", "schedules"]


def callback_on(text: str | None) -> list[str] | None:
    """``failure,change`` → ``["failure", "change"]`` (the server checks the names)."""
    return [w.strip() for w in text.split(",") if w.strip()] if text else None


@click.group(cls=ClientGroup)
@url_option
def schedules(url: str | None) -> None:
    """Scheduled collections of a running service (same URL and key as `collectq jobs`)."""


@schedules.command("create")
@job_request_options
@click.option("--cron", help='e.g. "30 2 * * *" (minute hour day month weekday)')
@click.option("--every", metavar="DURATION", help="an interval instead: 90s, 15m, 6h, 1d")
@click.option("--timezone", help="IANA zone of --cron and the window (default UTC)")
@click.option("--name")
@click.option("--jitter", metavar="DURATION", help="start each run up to this much later")
@click.option("--days", help="active days, e.g. mon,tue,wed,thu,fri")
@click.option("--hours", metavar="HH:MM-HH:MM", help="active hours, e.g. 08:00-18:00")
@click.option("--start-at", help="ISO 8601 with offset: no run before")
@click.option("--end-at", help="ISO 8601 with offset: no run after")
@click.option("--max-concurrent", type=int)
@click.option("--concurrency", type=click.Choice(["skip", "queue"]), help="a tick while busy")
@click.option("--callback-url", help="webhook for the runs' outcomes")
@click.option("--callback-on", metavar="always|failure|change", help="comma-separated")
@click.option("--paused", is_flag=True, help="create it paused")
@click.option("-q", "--quiet", is_flag=True, help="print only the schedule id")
@click.pass_context
def create(ctx: click.Context, /, target: str, **given: Any) -> None:
    """Create a schedule that submits TARGET with these collectors on each tick."""
    if (given["cron"] is None) == (given["every"] is None):
        raise click.UsageError("give one of --cron, --every")
    trigger = (
        {"cron": given["cron"]} if given["cron"] else {"interval": parse_duration(given["every"])}
    )
    body: dict[str, Any] = {
        "job": {
            "target": target,
            "collectors": parse_collectors(given["collectors"]),
            "options": parse_options(given["opts"]),
            "labels": parse_labels(given["labels"]),
        },
        "trigger": trigger,
        "paused": given["paused"],
    }
    for key in ("name", "timezone", "start_at", "end_at", "max_concurrent"):
        if given[key] is not None:
            body[key] = given[key]
    if given["jitter"]:
        body["jitter"] = parse_duration(given["jitter"])
    if given["concurrency"]:
        body["concurrency_policy"] = given["concurrency"]
    if given["days"] or given["hours"]:
        body["window"] = _window(given["days"], given["hours"])
    if given["callback_url"]:
        body["callback"] = {"url": given["callback_url"]}
        if given["callback_on"]:
            body["callback"]["on"] = callback_on(given["callback_on"])
    schedule = get_client(ctx).call("POST", "/v1/schedules", body)
    if given["quiet"]:
        click.echo(schedule["id"])
    else:
        emit(schedule)


def _window(days: str | None, hours: str | None) -> dict[str, Any]:
    window: dict[str, Any] = {}
    if days:
        window["days"] = [d.strip() for d in days.split(",") if d.strip()]
    if hours:
        start, sep, end = hours.partition("-")
        if not sep:
            raise click.BadParameter(f"{hours!r}: use HH:MM-HH:MM", param_hint="--hours")
        window |= {"start": start.strip(), "end": end.strip()}
    return window


@schedules.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page")
@click.option("--json", "as_json", is_flag=True, help="the API's page (items, next_cursor)")
@click.pass_context
def list_schedules(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List schedules: a table, or with --json the API's page."""
    page = get_client(ctx).call("GET", "/v1/schedules", query={"limit": limit, "cursor": cursor})
    if as_json:
        emit(page)
        return
    click.echo(f"{'ID':<29}{'STATE':<8}{'TRIGGER':<22}{'NEXT':<27}{'NAME':<17}TARGET")
    for s in page["items"]:
        trigger = s["trigger"]
        when = trigger.get("cron") or f"every {trigger.get('interval'):g} s"
        click.echo(
            f"{s['id']:<29}{'paused' if s['paused'] else 'active':<8}{when[:21]:<22}"
            f"{(s.get('next_fire_at') or '-')[:26]:<27}{(s.get('name') or '-')[:16]:<17}"
            f"{s['job']['target']}"
        )
    if page.get("next_cursor"):
        click.echo(f"(more: --cursor {page['next_cursor']})", err=True)


def _schedule_command(name: str, method: str, suffix: str, doc: str) -> None:
    @schedules.command(name, help=doc)
    @click.argument("schedule_id")
    @click.pass_context
    def command(ctx: click.Context, schedule_id: str) -> None:
        emit(get_client(ctx).call(method, f"/v1/schedules/{schedule_id}{suffix}"))


_schedule_command("get", "GET", "", "Print a schedule (with its next fire time).")
_schedule_command("pause", "POST", "/pause", "Pause a schedule: no tick fires until resumed.")
_schedule_command("resume", "POST", "/resume", "Resume a schedule: ticks count from now.")


@schedules.command("run")
@click.argument("schedule_id")
@click.option("--wait", is_flag=True, help="wait until the job is final; exit 0/1/2 by status")
@click.pass_context
def run(ctx: click.Context, schedule_id: str, wait: bool) -> None:
    """Run a schedule's job now; print the job's envelope (as `jobs submit`)."""
    client = get_client(ctx)
    envelope = client.call("POST", f"/v1/schedules/{schedule_id}/run")
    if wait:
        envelope = follow(client, envelope, stderr_board(envelope["collectors"]))
    emit(envelope)
    if wait:
        ctx.exit(exit_code_for(envelope["status"]))


@schedules.command("runs")
@click.argument("schedule_id")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page")
@click.pass_context
def runs(ctx: click.Context, schedule_id: str, limit: int, cursor: str | None) -> None:
    """The jobs a schedule created, newest first (the API's page)."""
    query = {"limit": limit, "cursor": cursor}
    emit(get_client(ctx).call("GET", f"/v1/schedules/{schedule_id}/runs", query=query))


@schedules.command("delete")
@click.argument("schedule_id")
@click.pass_context
def delete(ctx: click.Context, schedule_id: str) -> None:
    """Delete a schedule (the jobs it made stay)."""
    get_client(ctx).call("DELETE", f"/v1/schedules/{schedule_id}")
    click.echo(f"deleted {schedule_id}", err=True)
