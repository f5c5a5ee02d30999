"""What the client's commands (`collectq jobs …`, `collectq schedules …`) share: the
service and key (app/cli/clientconfig.py), the group that turns every client error into
a message and an exit code (never a traceback), and the JSON output.

Exit codes: 0 done (a waited job succeeded); 1 the job failed; 2 the job ended partial,
cancelled or expired (and click's usage errors, and an unusable client configuration);
3 the API answered with an error (its problem+json title, detail and field errors are
printed on stderr); 4 the service could not be reached (the URL is named).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click

from app.cli.clientconfig import KEY_FILE_VAR, KEY_VAR, ConfigProblem, config_path
from app.cli.clientconfig import load_client_config as _load_config
from app.cli.clienthttp import ApiClient, ApiProblem, ClientError
from schemas.status import JobStatus

__all__ = [
    "EXIT_FAILED",
    "EXIT_OTHER",
    "ClientGroup",
    "emit",
    "exit_code_for",
    "get_client",
    "problem_lines",
    "url_option",
]

EXIT_FAILED = 1
EXIT_OTHER = 2


def exit_code_for(status: str) -> int:
    """A finished job's exit code: 0 succeeded, 1 failed, 2 anything else."""
    if status == JobStatus.SUCCEEDED:
        return 0
    return EXIT_FAILED if status == JobStatus.FAILED else EXIT_OTHER


def problem_lines(exc: ApiProblem, key_source: str | None) -> list[str]:
    """The lines that tell a person what the API refused and why."""
    lines = [f"collectq: {exc.title} ({exc.status}): {exc.detail}".rstrip(": ")]
    lines += [f"  {field}: {message}" for field, message in exc.field_errors()]
    if exc.status == 401 and key_source is None:
        path, _ = config_path({})
        lines.append(f"  no API key: set {KEY_VAR}, {KEY_FILE_VAR} or api_key in {path}")
    elif exc.status == 401:
        lines.append(f"  (the API key came from {key_source})")
    if exc.problem.get("request_id"):
        lines.append(f"  request id: {exc.problem['request_id']}")
    return lines


class ClientGroup(click.Group):
    """A command group whose client errors end the command with a message and a code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigProblem as exc:
            click.echo(f"collectq: {exc}", err=True)
            ctx.exit(2)
        except ApiProblem as exc:
            source = ctx.meta.get("collectq.key_source")
            click.echo("\n".join(problem_lines(exc, source)), err=True)
            ctx.exit(exc.exit_code)
        except ClientError as exc:
            click.echo(f"collectq: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)


def url_option(fn: Any) -> Any:
    return click.option(
        "--url",
        metavar="URL",
        help="the service (default: $COLLECTQ_URL, the config file, http://127.0.0.1:8000)",
    )(fn)


def get_client(ctx: click.Context) -> ApiClient:
    """The client of this invocation (built once, from the group's --url)."""
    root = ctx.find_root()
    client = root.meta.get("collectq.client")
    if client is None:
        url = next((c.params.get("url") for c in _chain(ctx) if c.params.get("url")), None)
        config = _load_config(url)
        client = ApiClient(config.url, config.api_key)
        root.meta["collectq.client"] = client
        root.meta["collectq.key_source"] = config.key_source
    return client


def _chain(ctx: click.Context | None) -> list[click.Context]:
    out = []
    while ctx is not None:
        out.append(ctx)
        ctx = ctx.parent
    return out


def emit(data: Mapping[str, Any] | list[Any]) -> None:
    """JSON on stdout, as the API sent it."""
    click.echo(json.dumps(data, indent=2))
    sys.stdout.flush()
