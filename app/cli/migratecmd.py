"""`collectq migrate`: upgrade the records stored in Redis to their current versions.

Run it after every replica runs the new version (README "collectq migrate"); safe
while the service runs, idempotent, and resumable by running it again.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click
from redis.exceptions import RedisError

from app.migrations.kinds import KINDS, kind_named
from app.migrations.runner import Counts, MigrationError, migrate
from app.redisclient import redis_client
from app.rediskeys import RedisKeys

__all__ = ["migrate_command"]


def _table(counts: dict[str, Counts], dry_run: bool) -> list[str]:
    verb = "to upgrade" if dry_run else "upgraded"
    lines = [f"{'KIND':<16}{'CURRENT':>8}{'RECORDS':>9}{verb.upper():>12}{'AT CURRENT':>12}"]
    for name, c in counts.items():
        version = kind_named(name).current
        lines.append(
            f"{name:<16}{version:>8}{c.records:>9}{c.upgraded:>12}{c.current:>12}"
            + (f"  {c.newer} newer than this collectq: left alone" if c.newer else "")
        )
    total = sum(c.upgraded for c in counts.values())
    if dry_run:
        lines.append(f"dry run: {total} records would be upgraded; nothing was written")
    else:
        lines.append(f"{total} records upgraded" if total else "nothing to do")
    return lines


@click.command("migrate")
@click.option("--dry-run", is_flag=True, help="count what would change per kind; write nothing")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice([k.name for k in KINDS]),
    help="only these kinds of record (repeatable; default: all)",
)
@click.option("--batch", default=500, show_default=True, help="keys per SCAN step")
@click.option("--json", "as_json", is_flag=True, help="the counts as JSON")
def migrate_command(dry_run: bool, kinds: tuple[str, ...], batch: int, as_json: bool) -> None:
    """Upgrade stored records (jobs, keys, schedules, ...) to their current schema_version."""
    from app.cli.main import _say_where, settings_or_exit

    s = settings_or_exit()
    _say_where(s)
    chosen = [kind_named(k) for k in kinds] if kinds else list(KINDS)
    try:
        counts = migrate(
            redis_client(s.redis_url, read_timeout=60),
            RedisKeys(s.redis_prefix),
            dry_run=dry_run,
            batch=batch,
            kinds=chosen,
        )
    except (RedisError, MigrationError) as exc:
        click.echo(f"collectq migrate: {exc} (run it again: it is idempotent)", err=True)
        sys.exit(1)
    if as_json:
        out = {name: {**asdict(c), "records": c.records} for name, c in counts.items()}
        click.echo(json.dumps({"dry_run": dry_run, "kinds": out}, indent=2))
        return
    click.echo("\n".join(_table(counts, dry_run)))
