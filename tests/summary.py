"""The end of `make test`: the fault table, then one line that sums the whole run.

`python -m tests.summary` reads what the last pytest run wrote (tests/runreport.py)
and the fault tests' rows (tests/faults/results/latest.jsonl). Exit 1 when the run
failed, skipped for a reason not allowed, or lost or duplicated a job.
"""

from __future__ import annotations

import json
import sys

from tests.faults.report import fault_rows, print_table
from tests.runreport import SESSION, unexpected


def main() -> int:
    if not SESSION.exists():
        print("make test: no test run on record", file=sys.stderr)
        return 1
    run = json.loads(SESSION.read_text())
    skipped = run["skipped"]
    reasons = "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    line = (
        f"make test: {run['passed']} passed, {run['failed']} failed, {run['errors']} errors, "
        f"{sum(skipped.values())} skipped" + (f" ({reasons})" if reasons else "")
    )
    bad = 0
    if run["faults_ran"]:
        rows = fault_rows()
        bad = print_table(rows)
        line += f"; faults: {len(rows)} scenarios, {bad} lost or duplicated"
    print(line)
    failed = run["exit"] != 0 or bool(unexpected(skipped)) or bad > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
