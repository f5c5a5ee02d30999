"""Print the fault-test table from the last run: `python -m tests.faults.report`."""

from __future__ import annotations

import json
import sys

from tests.faults.conftest import RESULTS

COLUMNS = ("scenario", "accepted", "completed", "lost", "duplicated", "recover_s")
HEAD = ("scenario", "accepted", "completed", "lost", "duplicated", "time to recover (s)")


def main() -> int:
    if not RESULTS.exists() or not RESULTS.read_text().strip():
        # pytest already said why (skipped: no rabbitmq-server, or deselected)
        print(f"no fault-test results in {RESULTS}", file=sys.stderr)
        return 0
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
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
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
