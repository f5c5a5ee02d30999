"""The submit load: a bounded rate of jobs with a realistic mix, through the real API.

Every job the API accepted (202, or 200 for an idempotent repeat of a finished one) is
handed to the tracker with what was asked; a 503 is a refusal (counted, not a job); a
connection error or timeout is *unknown* (the job may or may not exist; counted apart,
never assumed lost or accepted).
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.apiprocess import RunningApi
from tests.soak.targets import Targets

__all__ = ["Load", "MIX"]

# kind → weight. Fan-out jobs carry several collectors; screenshots are few (two cores).
MIX = {
    "http-fast": 18,
    "http-slow": 8,
    "http-fail": 5,
    "http-flap": 7,
    "dns": 12,
    "tls": 10,
    "screenshot": 4,
    "fanout": 14,
    "fanout-shot": 3,
    "idempotent": 9,
    "cancel": 10,
}
CALLBACK_SHARE = 0.15  # jobs with a callback_url: the webhooks worker has work too
WAIT_SHARE = 0.15  # accepted jobs a client long-polls (?wait=)
STREAM_SHARE = 0.03  # accepted jobs a client follows on their event stream


@dataclass
class Counts:
    by_outcome: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str) -> None:
        with self.lock:
            self.by_outcome[what] += 1


class Load:
    """Submits `rate` jobs/s from a pool until stopped; `on_accept(id, kind, collectors)`."""

    def __init__(
        self,
        api: RunningApi,
        targets: Targets,
        rate: float,
        rng: random.Random,
        on_accept: Callable[[str, str, list[str]], None],
    ) -> None:
        self.api, self.t, self.rate, self.rng = api, targets, rate, rng
        self.on_accept = on_accept
        self.counts = Counts()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=12, thread_name_prefix="load")
        self._inflight = threading.Semaphore(24)  # bounded: an outage sheds, never piles up
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        kinds, weights = list(MIX), list(MIX.values())
        step = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            kind = self.rng.choices(kinds, weights)[0]
            seed = self.rng.random()
            if self._inflight.acquire(blocking=False):
                self._pool.submit(self._one, kind, seed)
            else:
                self.counts.add("shed")
            next_at += step
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _one(self, kind: str, seed: float) -> None:
        try:
            rng = random.Random(seed)
            if kind == "idempotent":
                self._idempotent(rng)
            elif kind == "cancel":
                self._cancel(rng)
            else:
                self._submit(kind, self.body(kind, rng), rng)
        except Exception as exc:
            self.counts.add(f"error:{type(exc).__name__}")
        finally:
            self._inflight.release()

    # --- request bodies ------------------------------------------------------------------
    def body(self, kind: str, rng: random.Random) -> dict[str, Any]:
        t = self.t
        dns = {"nameserver": "127.0.0.1", "port": t.dns_port, "types": ["A", "MX"], "timeout": 2}
        tls = {"port": t.tls_port, "ca_pem": t.ca_pem, "timeout": 5}
        shot = {"viewport": {"width": 320, "height": 240}}
        http = {"timeout": 5}
        bodies: dict[str, dict[str, Any]] = {
            "http-fast": {"target": f"{t.site}/fast", "collectors": ["http"]},
            "http-slow": {"target": f"{t.site}/slow", "collectors": ["http"]},
            "http-fail": {"target": f"{t.failing}/fail", "collectors": ["http"]},
            "http-flap": {"target": f"{t.flapping}/flap", "collectors": ["http"]},
            "dns": {"target": "example.test", "collectors": ["dns"], "options": {"dns": dns}},
            "tls": {"target": "localhost", "collectors": ["tls"], "options": {"tls": tls}},
            "screenshot": {
                "target": f"{t.site}/page",
                "collectors": ["screenshot"],
                "options": {"screenshot": shot},
            },
            "fanout": {
                "target": f"{t.site}/fast",
                "collectors": ["http", "dns", "tls"],
                "options": {"dns": dns, "tls": tls},
            },
            "fanout-shot": {
                "target": f"{t.site}/page",
                "collectors": ["http", "dns", "tls", "screenshot"],
                "options": {"dns": dns, "tls": tls, "screenshot": shot},
            },
        }
        body = {**bodies[kind], "fresh": True, "labels": {"soak": kind}}
        if "http" in body["collectors"]:
            body["options"] = {**body.get("options", {}), "http": http}
        if rng.random() < CALLBACK_SHARE:
            body["callback_url"] = f"{t.webhooks.base}/hook"
        return body

    # --- the kinds -----------------------------------------------------------------------
    def _post(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> str | None:
        """The accepted job's id, or None (refused or unknown), counted either way."""
        try:
            status, answer, _ = self.api.call("POST", "/v1/jobs", body, headers)
        except (OSError, ValueError):
            self.counts.add("submit-unknown")
            return None
        if status in (200, 202):
            return str(answer["id"])
        self.counts.add(f"submit-{status}")
        return None

    def _submit(self, kind: str, body: dict[str, Any], rng: random.Random) -> str | None:
        job_id = self._post(body)
        if job_id is None:
            return None
        self.counts.add("accepted")
        self.on_accept(job_id, kind, list(body["collectors"]))
        roll = rng.random()
        if roll < WAIT_SHARE:
            self._long_poll(job_id)
        elif roll < WAIT_SHARE + STREAM_SHARE:
            self._stream(job_id)
        return job_id

    def _idempotent(self, rng: random.Random) -> None:
        key = uuid.uuid4().hex
        body = self.body(rng.choice(["http-fast", "dns", "tls", "fanout"]), rng)
        first = self._post(body, {"Idempotency-Key": key})
        if first is None:
            return
        self.counts.add("accepted")
        self.on_accept(first, "idempotent", list(body["collectors"]))
        time.sleep(rng.uniform(0, 3))
        again = self._post(body, {"Idempotency-Key": key})
        if again is not None:
            self.counts.add("idempotent-same" if again == first else "idempotent-other")

    def _cancel(self, rng: random.Random) -> None:
        kind = rng.choice(["http-slow", "fanout", "screenshot"])
        job_id = self._submit("cancel", self.body(kind, rng), rng)
        if job_id is None:
            return
        time.sleep(rng.uniform(0, 1.5))
        try:
            status, _, _ = self.api.call("DELETE", f"/v1/jobs/{job_id}")
        except OSError:
            status = 0
        self.counts.add(f"cancel-{status}")

    def _long_poll(self, job_id: str) -> None:
        try:
            status, env, _ = self.api.call("GET", f"/v1/jobs/{job_id}?wait=5")
        except OSError:
            self.counts.add("wait-error")
            return
        self.counts.add(f"wait-{status}")

    def _stream(self, job_id: str) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api.port}/v1/jobs/{job_id}/events",
            headers={"Authorization": f"Bearer {self.api.token}"},
        )
        deadline = time.monotonic() + 30
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                for line in resp:
                    if line.startswith(b"event: done"):
                        self.counts.add("stream-done")
                        return
                    if time.monotonic() > deadline:
                        break
            self.counts.add("stream-unfinished")
        except (OSError, urllib.error.HTTPError):
            self.counts.add("stream-error")
