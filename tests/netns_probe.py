"""Probe every collector with non-loopback internal addresses — run ONLY inside a
network namespace that has nothing but loopback (see tests/integration/test_ssrf_netns.py).

It refuses to probe unless the only interface it can see is ``lo``: there, even a
guard bug could not send a packet anywhere (the connect fails "network unreachable").
Prints one JSON object per probe: collector, target, and what came back.
"""

from __future__ import annotations

import json
import socket
import sys

from collectors.base import CollectContext, CollectorError, NetworkPolicy
from tests.ssrf import COLLECTORS, NON_LOOPBACK_HOSTS, probe_cases

PROBE_PORT = 80


def main() -> int:
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        print(f"refusing to probe: interfaces {interfaces} (want only lo)", file=sys.stderr)
        return 3
    ctx = CollectContext(policy=NetworkPolicy())
    collectors = {name: cls() for name, cls in COLLECTORS.items()}
    try:
        for name, target, raw in probe_cases(NON_LOOPBACK_HOSTS, PROBE_PORT):
            collector = collectors[name]
            try:
                collector.collect(target, collector.options_schema().load(raw), ctx)
                outcome = {"type": "not blocked", "detail": ""}
            except CollectorError as exc:
                outcome = exc.to_dict()
            print(json.dumps({"collector": name, "target": target, **outcome}), flush=True)
    finally:
        for c in collectors.values():
            c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
