"""`collectq keys create|list|revoke|rotate`: manage API keys straight in Redis.

The first admin key has to come from somewhere: this is it (the API's
/v1/keys needs an admin key already).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from marshmallow import ValidationError
from redis.exceptions import RedisError

from app.auth.apikeys import KeyStore
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
    data = _load(KeyCreateSchema(), body)
    _, store = _store()
    key, token = _run(
        store.create,
        owner=data["owner"],
        name=data["name"],
        scopes=data["scopes"],
        expires_at=time.time() + data["expires_in"] if data.get("expires_in") else None,
        cidrs=data["cidrs"],
        rate_limits=data["rate_limits"],
    )
    click.echo(token if quiet else json.dumps({**key.public(), "token": token}, indent=2))


@keys.command("list")
@click.option("--owner", help="only this owner's keys")
@click.option("--json", "as_json", is_flag=True)
def list_keys(owner: str | None, as_json: bool) -> None:
    """Every key (never a secret)."""
    _, store = _store()
    items = [k.public() for k in _run(store.list, owner)]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(f"{'PREFIX':<14}{'OWNER':<16}{'NAME':<16}{'STATE':<12}{'EXPIRES':<22}SCOPES")
    for k in items:
        click.echo(
            f"{k['prefix']:<14}{k['owner'][:15]:<16}{k['name'][:15]:<16}{k['state']:<12}"
            f"{k['expires_at'] or '-':<22}{','.join(k['scopes'])}"
        )


@keys.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke a key now."""
    _, store = _store()
    click.echo(json.dumps(_run(store.revoke, prefix).public(), indent=2))


@keys.command("rotate")
@click.argument("prefix")
@click.option("--overlap", help="how long the old key keeps working, e.g. 1h (default setting)")
@click.option("-q", "--quiet", is_flag=True, help="print only the new token")
def rotate(prefix: str, overlap: str | None, quiet: bool) -> None:
    """Issue a successor key; the old one stops after the overlap."""
    settings, store = _store()
    seconds = parse_duration(overlap) if overlap else settings.key_rotation_overlap
    _load(KeyRotateSchema(), {"overlap": seconds})
    new, token, old = _run(store.rotate, prefix, seconds)
    if quiet:
        click.echo(token)
    else:
        out = {"key": {**new.public(), "token": token}, "previous": old.public()}
        click.echo(json.dumps(out, indent=2))
