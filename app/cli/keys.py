"""`collectq keys create|list|revoke|rotate|rotate-due|events`: manage API keys straight
in Redis; `collectq keys rotate --self`: the client's own key, over the API.

The first admin key has to come from somewhere: this is it (the API's
/v1/keys needs an admin key already). What these commands do is recorded in each key's
audit trail with the actor ``cli:{user}@{host}``.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import time
from typing import Any

import click
from marshmallow import ValidationError
from redis.exceptions import RedisError

from app.auth.apikeys import KeyStore
from app.cli.client import problem_lines
from app.cli.clientconfig import ConfigProblem, load_client_config
from app.cli.clienthttp import ApiClient, ApiProblem, ClientError
from app.cli.jobargs import parse_duration
from app.errors import CollectqError
from app.redisclient import redis_client
from app.settings import Settings
from schemas.keys import SCOPES, KeyCreateSchema, KeyRotateSchema

__all__ = ["keys", "parse_duration"]


def _store() -> tuple[Settings, KeyStore]:
    from app.cli.main import _say_where, settings_or_exit

    s = settings_or_exit()
    _say_where(s)
    return s, KeyStore(redis_client(s.redis_url), s.redis_prefix)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's numeric user)
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def _fail(msg: str, code: int = 1) -> None:
    click.echo(f"collectq: {msg}", err=True)
    sys.exit(code)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RedisError as exc:
        _fail(f"redis unreachable: {exc}")
    except CollectqError as exc:
        _fail(exc.detail)


def _load(schema: Any, data: dict[str, Any]) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        _fail(f"invalid: {json.dumps(exc.messages)}", 2)
    return loaded


@click.group()
def keys() -> None:
    """API keys: create, list, revoke, rotate (secrets are shown once, at creation)."""


@keys.command("create")
@click.option("--owner", required=True, help="who the key's jobs belong to")
@click.option("--name", required=True, help="what the key is for (e.g. ci, grafana)")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help=f"repeat or comma-separate: {', '.join(SCOPES)}",
)
@click.option("--expires-in", help="e.g. 90d (default: never)")
@click.option(
    "--rotate-every", help="rotation period, e.g. 30d (default: KEY_ROTATION_PERIOD, if set)"
)
@click.option("--cidr", "cidrs", multiple=True, help="client networks allowed (repeatable)")
@click.option(
    "--rate-limit", "rates", multiple=True, help="class=limit, e.g. submit=1000/minute (repeatable)"
)
@click.option("-q", "--quiet", is_flag=True, help="print only the token")
def create(
    owner: str,
    name: str,
    scopes: tuple[str, ...],
    expires_in: str | None,
    rotate_every: str | None,
    cidrs: tuple[str, ...],
    rates: tuple[str, ...],
    quiet: bool,
) -> None:
    """Create a key and print its token (the only time it is shown)."""
    body: dict[str, Any] = {
        "owner": owner,
        "name": name,
        "scopes": [s.strip() for group in scopes for s in group.split(",") if s.strip()],
        "cidrs": list(cidrs),
        "rate_limits": dict(r.split("=", 1) for r in rates if "=" in r),
    }
    if len(body["rate_limits"]) != len(rates):
        _fail("--rate-limit takes class=limit", 2)
    if expires_in:
        body["expires_in"] = parse_duration(expires_in)
    if rotate_every:
        body["rotation_period"] = parse_duration(rotate_every)
    data = _load(KeyCreateSchema(), body)
    settings, store = _store()
    key, token = _run(
        store.create,
        owner=data["owner"],
        name=data["name"],
        scopes=data["scopes"],
        expires_at=time.time() + data["expires_in"] if data.get("expires_in") else None,
        cidrs=data["cidrs"],
        rate_limits=data["rate_limits"],
        rotation_period=data.get("rotation_period", settings.key_rotation_period),
        actor=_actor(),
    )
    public = key.public(warning=settings.key_expiry_warning)
    click.echo(token if quiet else json.dumps({**public, "token": token}, indent=2))


@keys.command("list")
@click.option("--owner", help="only this owner's keys")
@click.option("--json", "as_json", is_flag=True)
def list_keys(owner: str | None, as_json: bool) -> None:
    """Every key (never a secret)."""
    settings, store = _store()
    items = [k.public(warning=settings.key_expiry_warning) for k in _run(store.list, owner)]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(
        f"{'PREFIX':<14}{'OWNER':<16}{'NAME':<16}{'STATE':<12}{'EXPIRES':<22}{'FLAG':<14}SCOPES"
    )
    for k in items:
        click.echo(
            f"{k['prefix']:<14}{k['owner'][:15]:<16}{k['name'][:15]:<16}{k['state']:<12}"
            f"{k['expires_at'] or '-':<22}{k['flag'] or '-':<14}{','.join(k['scopes'])}"
        )


@keys.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke a key now."""
    _, store = _store()
    click.echo(json.dumps(_run(store.revoke, prefix, _actor()).public(), indent=2))


@keys.command("rotate")
@click.argument("prefix", required=False)
@click.option(
    "--self",
    "itself",
    is_flag=True,
    help="rotate the key this client uses ($COLLECTQ_API_KEY …), over the API; no admin needed",
)
@click.option("--url", help="with --self: the service (default: $COLLECTQ_URL, the config file)")
@click.option("--overlap", help="how long the old key keeps working, e.g. 1h (default setting)")
@click.option("-q", "--quiet", is_flag=True, help="print only the new token")
def rotate(
    prefix: str | None, itself: bool, url: str | None, overlap: str | None, quiet: bool
) -> None:
    """Issue a successor of key PREFIX (or, with --self, of the client's own key); the old
    key stops after the overlap. The new token is printed once."""
    if itself == (prefix is not None):
        raise click.UsageError("give PREFIX or --self, not both")
    seconds = parse_duration(overlap) if overlap else None
    if seconds is not None:
        _load(KeyRotateSchema(), {"overlap": seconds})
    if itself:
        out = _rotate_self(url, seconds)
    else:
        settings, store = _store()
        new, token, old = _run(
            store.rotate,
            prefix,
            settings.key_rotation_overlap if seconds is None else seconds,
            _actor(),
        )
        warning = settings.key_expiry_warning
        out = {
            "key": {**new.public(warning=warning), "token": token},
            "previous": old.public(warning=warning),
        }
    click.echo(out["key"]["token"] if quiet else json.dumps(out, indent=2))


def _rotate_self(url: str | None, overlap: int | None) -> dict[str, Any]:
    """POST /v1/keys/self/rotate with the client's key (errors: a message, never a trace)."""
    source = None
    try:
        config = load_client_config(url)
        source = config.key_source
        body = {} if overlap is None else {"overlap": overlap}
        answer: dict[str, Any] = ApiClient(config.url, config.api_key).call(
            "POST", "/v1/keys/self/rotate", body
        )
    except ConfigProblem as exc:
        _fail(str(exc), 2)
    except ApiProblem as exc:
        click.echo("\n".join(problem_lines(exc, source)), err=True)
        sys.exit(exc.exit_code)
    except ClientError as exc:
        _fail(str(exc), exc.exit_code)
    return answer


@keys.command("rotate-due")
@click.option("--overlap", help="how long each old key keeps working (default setting)")
@click.option("--dry-run", is_flag=True, help="list the keys that are due, rotate none")
def rotate_due(overlap: str | None, dry_run: bool) -> None:
    """Rotate every active key past its rotation period. Prints one JSON line per key
    with its successor's token: the only time it is shown (hand it to a secret store)."""
    settings, store = _store()
    seconds = parse_duration(overlap) if overlap else settings.key_rotation_overlap
    _load(KeyRotateSchema(), {"overlap": seconds})
    due = _run(store.due_for_rotation, time.time())
    for key in due:
        line: dict[str, Any] = {"previous": key.prefix, "owner": key.owner, "name": key.name}
        if not dry_run:
            new, token, _ = _run(store.rotate, key.prefix, seconds, _actor())
            line |= {"prefix": new.prefix, "expires_at": new.public()["expires_at"], "token": token}
        click.echo(json.dumps(line))
    verb = "due" if dry_run else "rotated"
    click.echo(f"collectq: {len(due)} key(s) {verb}", err=True)


@keys.command("events")
@click.argument("prefix")
@click.option("--limit", type=click.IntRange(1, 500), default=50)
def events(prefix: str, limit: int) -> None:
    """A key's audit trail, newest first (JSON lines): who created, rotated, revoked it,
    first use from each network, expiry notices."""
    _, store = _store()
    _run(store.get, prefix)
    items, _ = _run(store.audit.list, prefix, limit=limit)
    for item in items:
        click.echo(json.dumps(item))
