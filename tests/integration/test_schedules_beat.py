"""Two real `collectq beat` processes and a real worker: a 2-second schedule fires once per
tick (only the lock holder sends), and a SIGKILLed active beat is replaced by the standby
within the lock timeout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.runtime import runtime
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration

LOCK_TIMEOUT = 3.0
MAX_INTERVAL = 0.5
BEAT_ENV = {
    "COLLECTQ_BEAT_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    "COLLECTQ_BEAT_MAX_INTERVAL": str(MAX_INTERVAL),
}


class Beat:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path, self._log = log, log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "beat"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sent(self, name: str) -> int:
        return len(re.findall(rf"Sending due task {name}\b", self.text()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def beats(service_env: dict[str, str], tmp_path: Path) -> Iterator[list[Beat]]:
    started: list[Beat] = []
    env = {**service_env, **BEAT_ENV}
    started.append(Beat(env, tmp_path / "beat0.log"))
    wait_for(lambda: "Acquired lock" in started[0].text(), timeout=20, interval=0.1)
    started.append(Beat(env, tmp_path / "beat1.log"))
    wait_for(lambda: "standby" in started[1].text(), timeout=20, interval=0.1)
    yield started
    for b in started:
        b.stop()


def _runs(app: Any, sid: str) -> list[dict[str, Any]]:
    c = app.test_client()
    return list(c.get(f"/v1/schedules/{sid}/runs?limit=500").json["items"])


def test_two_beats_fire_each_tick_once_and_the_standby_takes_over(
    make_app: Any, start_worker: Any, beats: list[Beat]
) -> None:
    start_worker("maintenance,collect.noop")
    app = make_app(**BEAT_ENV)
    active, standby = beats
    body = {
        "job": {"target": "http://127.0.0.1:9/", "collectors": ["noop"]},
        "trigger": {"interval": 2},
        "max_concurrent": 5,
    }
    r = app.test_client().post("/v1/schedules", json=body)
    assert r.status_code == 201, r.json
    sid = r.json["id"]
    t0 = time.time()
    time.sleep(7.2)  # ticks due at t0+2, +4, +6 (each a little later: beat's interval)
    window = time.time() - t0
    sent = active.sent(sid)
    # every tick sent is run by the worker (bounded wait: it may be busy)
    wait_for(lambda: len(_runs(app, sid)) >= sent, timeout=10, interval=0.2)
    runs = _runs(app, sid)
    per_due = Counter(run["due_at"] for run in runs)
    jobs = {run["job_id"] for run in runs}
    print(
        f"fires in {window:.1f}s: {len(runs)}; sends: active {active.sent(sid)}, "
        f"standby {standby.sent(sid)}; jobs per due time: {sorted(per_due.values())}"
    )
    assert 3 <= sent <= 4, active.text()[-2000:]
    assert len(runs) >= sent, runs
    assert set(per_due.values()) == {1}, per_due  # never twice for one tick
    assert len(jobs) == len(runs)
    assert standby.sent(sid) == 0  # the standby sends nothing while the lock is held
    envelopes = [runtime(app).store.get(j) for j in jobs]
    assert {e["schedule_id"] for e in envelopes if e} == {sid}

    before = len(runs)
    active.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: "Acquired lock" in standby.text(), timeout=LOCK_TIMEOUT + 5, interval=0.05)
    takeover = time.monotonic() - killed
    print(f"standby took over {takeover:.1f}s after SIGKILL (lock timeout {LOCK_TIMEOUT}s)")
    assert takeover <= LOCK_TIMEOUT + MAX_INTERVAL + 1.0
    wait_for(lambda: len(_runs(app, sid)) >= before + 1, timeout=6, interval=0.2)
    assert standby.sent(sid) >= 1
    after = Counter(run["due_at"] for run in _runs(app, sid))
    assert set(after.values()) == {1}, after
