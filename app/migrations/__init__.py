"""Stored schema versions and `collectq migrate` (README "collectq migrate",
docs/decisions.md "Deployment: stored schema versions and migrations (issue 14)").

- `versions`: each record kind's current version and the `schema_version` field the
  writers stamp (imports nothing, so every part of `app` may use it);
- `kinds`: the registry: every kind of record kept in Redis, where it lives, its shape
  and its upgrade steps;
- `scripts`: the per-record atomic updates (Lua) the runner sends;
- `runner`: SCAN batch by batch, upgrade what is older than its kind's current version.

The package itself imports nothing: the writers import `app.migrations.versions` alone.
"""
