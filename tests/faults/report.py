"""Print the fault-test table from the last run: `python -m tests.faults.report`."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.faults.conftest import RESULTS

COLUMNS = ("scenario", "accepted", "completed", "lost", "duplicated", "recover_s")
HEAD = ("scenario", "accepted", "completed", "lost", "duplicated", "time to recover (s)")


def fault_rows() -> list[dict[str, Any]]:
    """The rows the last fault run recorded (none if it did not run)."""
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def print_table(rows: list[dict[str, Any]]) -> int:
    """Print the table of `rows`; return how many jobs were lost or duplicated."""
    print("| " + " | ".join(HEAD) + " | notes |")
    print("|" + "---|" * (len(HEAD) + 1))
    bad = 0
    for row in rows:
        cells = ["—" if row.get(c) is None else str(row[c]) for c in COLUMNS]
        notes = ", ".join(
            f"{k}={v}" for k, v in row.items() if k not in COLUMNS and k != "attempts"
        )
        attempts = row.get("attempts")
        if attempts:
            notes = f"attempts {attempts}" + (f"; {notes}" if notes else "")
        print("| " + " | ".join(cells) + f" | {notes} |")
        bad += int(row["lost"]) + int(row["duplicated"])
    print(f"\n{len(rows)} scenarios; lost + duplicated = {bad}")
    return bad


def main() -> int:
    rows = fault_rows()
    if not rows:
        print(f"no fault-test results in {RESULTS}", file=sys.stderr)
        return 1
    return 1 if print_table(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
