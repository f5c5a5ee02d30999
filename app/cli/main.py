"""The `collectq` command line: collect, api, worker, beat, up, config check/table, migrate,
and the client of a running service (jobs, schedules)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from app.cli.jobargs import parse_collectors, parse_options
from app.cli.jobscmd import jobs
from app.cli.keys import keys
from app.cli.migratecmd import migrate_command
from app.cli.schedulescmd import schedules
from app.jobs.names import COLLECTOR_QUEUE_PREFIX
from app.logs import configure_logging
from app.metrics_serve import use_multiproc_dir
from app.settings import (
    POOL_TYPES,
    RUN_FILE,
    UP_TOKEN_VAR,
    ConfigError,
    Settings,
    configured,
    is_loopback_host,
    load_settings,
    open_api_refusal,
    up_run,
)
from app.settings_doc import settings_table_markdown, with_settings_table

__all__ = ["main"]


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        click.echo(f"collectq: {exc}", err=True)
        sys.exit(2)


def _say_where(settings: Settings) -> None:
    """Say on stderr when the services are those of a running `collectq up`."""
    run = up_run()
    if run is not None and settings.redis_url == run.get("redis_url"):
        click.echo(
            f"collectq: using the embedded Redis of `collectq up` (pid {run['pid']}, {RUN_FILE})",
            err=True,
        )


def _exec(argv: list[str]) -> NoReturn:
    """Replace this process (signals then reach the server directly)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv])  # noqa: S606 - our own interpreter


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """collectq: a distributed data-collection service."""


@main.command()
@click.argument("target")
@click.option("-c", "--collectors", default="http", show_default=True, help="comma-separated")
@click.option(
    "-o", "--option", "opts", multiple=True, help="collector.key=value (value is JSON or text)"
)
@click.option(
    "--save-artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    help="write artifacts here",
)
@click.option(
    "--artifact",
    "artifact_files",
    multiple=True,
    metavar="NAME=FILE",
    help="write artifact NAME to FILE, e.g. http.body=page.html",
)
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the screenshot PNG here (same as --artifact screenshot.png=FILE)",
)
def collect(
    target: str,
    collectors: str,
    opts: tuple[str, ...],
    save_artifacts: Path | None,
    artifact_files: tuple[str, ...],
    screenshot: Path | None,
) -> None:
    """Run collectors in-process (no servers) and print the result envelope."""
    from app.cli.local import TerminalProgress, collect_locally

    # In-process, as the invoking user: the dev profile unless COLLECTQ_ENV says otherwise
    # (a worker or API without COLLECTQ_ENV gets no dev allowances; this is neither).
    settings = settings_or_exit(**({} if configured("env") else {"env": "dev"}))
    configure_logging(settings)  # a collector's log lines: on stderr, as in every process
    if settings.is_dev and settings.net_allow:
        click.echo(
            f"collectq: dev profile: loopback allowed ({', '.join(settings.net_allow)})", err=True
        )
    options = parse_options(opts)
    save: dict[str, Path] = {"screenshot.png": screenshot} if screenshot else {}
    for spec in artifact_files:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise click.BadParameter(f"{spec!r}: use NAME=FILE", param_hint="--artifact")
        save[name] = Path(file)
    names = parse_collectors(collectors)
    # progress only for a person watching: never into a pipe or a file
    progress = TerminalProgress(sys.stderr, names) if sys.stderr.isatty() else None
    code, envelope = collect_locally(
        settings, target, names, options, save_artifacts, save, progress
    )
    click.echo(json.dumps(envelope, indent=2))
    sys.exit(code)


@main.command()
@click.option("--bind", help="host:port (default from COLLECTQ_API_HOST/PORT)")
def api(bind: str | None) -> None:
    """Run the HTTP API under gunicorn."""
    s = settings_or_exit()
    bind = bind or f"{s.api_host}:{s.api_port}"
    if not s.auth and not is_loopback_host(bind.rpartition(":")[0] or bind):
        click.echo("collectq: COLLECTQ_AUTH=off is only allowed on a loopback bind", err=True)
        sys.exit(2)
    refusal = open_api_refusal(s, os.environ.get(UP_TOKEN_VAR), up_run())
    if refusal is not None:
        click.echo(f"collectq: {refusal}", err=True)
        sys.exit(2)
    use_multiproc_dir(s, "api")  # before gunicorn imports prometheus_client
    _exec(
        [
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",  # the master's metrics listener and hooks
            "--bind",
            bind,
            "--workers",
            str(s.api_workers),
            *_worker_class_args(s),
            "--graceful-timeout",
            "30",
            "--timeout",
            str(max(60, s.max_wait + 30)),
            "app.wsgi:application",
        ]
    )


def _worker_class_args(s: Settings) -> list[str]:
    """gevent: a waiting client (long-poll, event stream) holds a greenlet, not a thread
    (docs/decisions.md, "Live events"); the worker monkey-patches before loading the app."""
    if s.api_worker_class == "gevent":
        return ["--worker-class", "gevent", "--worker-connections", str(s.api_connections)]
    return ["--worker-class", "gthread", "--threads", str(s.api_threads)]


@main.command()
@click.option("-Q", "--queues", required=True, help="comma-separated queues, e.g. collect.http")
@click.option("-c", "--concurrency", type=int, help="default: the queue's COLLECTQ_POOL_<NAME>")
@click.option(
    "-P",
    "--pool",
    type=click.Choice(list(POOL_TYPES)),
    help="default: the queue's COLLECTQ_POOL_<NAME>",
)
@click.option("-n", "--hostname", help="node name (default <queues>@%h)")
@click.option("-q", "--quiet", is_flag=True, help="no Celery banner (`collectq up` prints one)")
def worker(
    queues: str, concurrency: int | None, pool: str | None, hostname: str | None, quiet: bool
) -> None:
    """Run a Celery worker for the given queues.

    A worker for one collector's queue runs with that collector's pool settings;
    a worker for several queues uses the global COLLECTQ_WORKER_POOL/CONCURRENCY.
    """
    s = settings_or_exit()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    kind, size, prefetch = s.worker_pool, s.worker_concurrency, 1
    if len(names) == 1 and names[0].startswith(COLLECTOR_QUEUE_PREFIX):
        ps = s.pool_for(names[0].removeprefix(COLLECTOR_QUEUE_PREFIX))
        kind, size, prefetch = ps.pool, ps.concurrency, ps.prefetch
    use_multiproc_dir(s, "worker")  # before celery imports prometheus_client
    _exec(
        [
            "-m",
            "celery",
            *(["--quiet"] if quiet or s.log_json else []),  # JSON: no multi-line banner
            "-A",
            "app.worker",
            "worker",
            "-Q",
            ",".join(names),
            "-P",
            pool or kind,
            "-c",
            str(concurrency or size),
            "--prefetch-multiplier",
            str(prefetch),
            "-n",
            hostname or f"{queues.replace(',', '+')}@%h",
            "-l",
            s.log_level,
            "--without-mingle",
        ]
    )


@main.command()
@click.option(
    "-s",
    "--schedule",
    default=None,
    help="ignored: beat keeps its state in Redis (redbeat); accepted for old scripts",
)
@click.option("-q", "--quiet", is_flag=True, help="no Celery banner (`collectq up` prints one)")
def beat(schedule: str | None, quiet: bool) -> None:
    """Run Celery beat: the reaper's ticks and the schedules' (one active, others standby)."""
    s = settings_or_exit()
    quiet_flag = ["--quiet"] if quiet or s.log_json else []  # JSON: no multi-line banner
    _exec(["-m", "celery", *quiet_flag, "-A", "app.worker", "beat", "-l", s.log_level])


@main.command()
def up() -> None:
    """Start the whole service (embedded Redis unless URLs are configured)."""
    from app.cli.up import run_up

    sys.exit(run_up())


@main.command()
@click.option("--port", type=int, help="default COLLECTQ_FLOWER_PORT")
def flower(port: int | None) -> None:
    """Run Flower (Celery monitoring) with basic auth from COLLECTQ_FLOWER_BASIC_AUTH."""
    from app.cli.flowercmd import flower_access, run_flower
    from app.logs import configure_logging

    s = settings_or_exit()
    access = flower_access(s)
    if access.refusal is not None:
        click.echo(f"collectq: {access.refusal}", err=True)
        sys.exit(2)
    if access.basic_auth is None and not os.environ.get(UP_TOKEN_VAR):  # up's banner says it
        click.echo(
            f"collectq: FLOWER IS OPEN (no COLLECTQ_FLOWER_BASIC_AUTH) on {s.flower_host}", err=True
        )
    configure_logging(s)  # its reloads are logged (`app.secretfiles`)
    sys.exit(run_flower(s, port))


main.add_command(keys)
main.add_command(jobs)  # the client: a running service over HTTP (app/cli/client.py)
main.add_command(schedules)
main.add_command(migrate_command)  # stored records to their current versions (app.migrations)


@main.group()
def config() -> None:
    """Configuration tools."""


@config.command("check")
def config_check() -> None:
    """Print the effective configuration (secrets redacted); exit non-zero on errors."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"collectq: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(settings.redacted(), indent=2))
    _say_where(settings)
    if not configured("env"):
        click.echo(
            "collectq: COLLECTQ_ENV is not set: dev defaults without dev's allowances "
            "(no loopback targets, auth stays on); set COLLECTQ_ENV explicitly",
            err=True,
        )
    click.echo("configuration OK", err=True)


@config.command("table")
@click.option(
    "--readme",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="rewrite the table between the settings-table markers of this file instead",
)
def config_table(readme: Path | None) -> None:
    """Print the markdown table of every setting (the README's), from the declarations."""
    if readme is None:
        click.echo(settings_table_markdown(), nl=False)
        return
    try:
        readme.write_text(with_settings_table(readme.read_text()))
    except ValueError as exc:
        raise click.ClickException(f"{readme}: {exc}") from None
