"""The version of each kind of stored record, and the field that carries it.

Every record collectq writes carries ``schema_version`` (a hash field, or a key of
the record's JSON). A record without it was written before versions were stored:
it is version 1 (`UNVERSIONED`), and every reader accepts it. Each kind counts on
its own; `app.migrations.kinds` holds the steps from one version to the next.

This is the *stored* format. The API envelope's ``schema_version`` is the format of
the answer (`schemas.SCHEMA_VERSION`), a contract of its own: a record's storage can
change without the API's answer changing, and the reader converts.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "API_KEY",
    "ARTIFACT",
    "CHANGE",
    "DELIVERY",
    "FIELD",
    "FINGERPRINT",
    "JOB",
    "KEY_EVENT",
    "SCHEDULE",
    "SCHEDULE_RUN",
    "UNVERSIONED",
    "WEBHOOK_ENDPOINT",
    "WEBHOOK_SECRET",
    "stamped",
    "unstamped",
    "version_of",
]

FIELD = "schema_version"
UNVERSIONED = 1  # a record without FIELD: written before versions were stored

# Version 2 of each kind = version 1 with FIELD written (and, for API keys, the
# fields that keys written before the key-policy fields existed lack).
JOB = 2  # p job:{id}
ARTIFACT = 2  # p art:{id}:{name}
API_KEY = 2  # p key:{prefix}
SCHEDULE = 2  # p sch:{id}
SCHEDULE_RUN = 2  # members of p schruns:{id}
WEBHOOK_SECRET = 2  # p whsec:{owner}
DELIVERY = 2  # values of p dlv:{id}
FINGERPRINT = 2  # values of p chfp:{schedule}
CHANGE = 2  # entries of p chg:{schedule}, and p chgdone:{job}
# Kinds born versioned (issue 16): never written without FIELD, nothing to upgrade.
KEY_EVENT = 2  # entries of p keyev:{prefix}
WEBHOOK_ENDPOINT = 2  # p whep:{owner}


def stamped(record: dict[str, Any], version: int) -> dict[str, Any]:
    """`record` (a JSON record) as written at `version`."""
    return {**record, FIELD: version}


def version_of(record: dict[str, Any]) -> int:
    """The stored version of a JSON record (1 when it has none)."""
    return int(record.get(FIELD, UNVERSIONED))


def unstamped(record: dict[str, Any]) -> dict[str, Any]:
    """`record` as its reader hands it on: without the storage version."""
    record.pop(FIELD, None)
    return record
