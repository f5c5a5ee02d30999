"""A load test of a collectq deployment (locust): the clients of one API key, a realistic mix.

    COLLECTQ_API_KEY=cq_… locust -f benchmarks/locustfile.py --host https://collectq.example \\
        --headless --users 50 --spawn-rate 5 --run-time 5m --csv collectq-load

Each simulated user is one client: it submits jobs and follows the ones it submitted.
`python -m benchmarks locust` (make bench-load) runs it against the service on loopback.

Settings (environment; only COLLECTQ_API_KEY is required):

    COLLECTQ_API_KEY          the API key (scopes jobs:read, jobs:write); several, comma-
                              separated, are shared out round-robin over the users
    COLLECTQ_LOAD_TARGETS     comma-separated targets of the submits (default example.com:
                              reserved for examples, RFC 2606); "{n}" in a target becomes a
                              number of its own per submit, so no two submits are the same work
    COLLECTQ_LOAD_COLLECTORS  comma-separated collectors of each job (default dns: a cached
                              lookup is the lightest load a job puts on the outside world)
    COLLECTQ_LOAD_THINK       "min,max" seconds a user pauses between requests (default 1,3)
    COLLECTQ_LOAD_WAIT        seconds of a long-poll or a submit's ?wait= (default 5)
    COLLECTQ_LOAD_EVENTS      events read from a job's event stream before closing it
                              (default 20; the stream is closed after WAIT + 5 s anyway)
    COLLECTQ_LOAD_VERIFY_TLS  0: accept any TLS certificate (a staging gateway's own CA)

The mix (task weights; a user picks its next request with these odds):

    weight  request (stats name)                 what
    5       POST /v1/jobs                        submit; 1 in 5 with a fresh Idempotency-Key
            POST /v1/jobs [idempotent repeat]    1 in 10: one of the user's earlier keys and
                                                 bodies again; must answer the same job
    6       GET /v1/jobs/{id}                    poll one of the user's last 50 jobs
    1       POST /v1/jobs?wait                   submit and wait for the end (200, or the
                                                 202 after WAIT seconds)
    2       GET /v1/jobs/{id}?wait               long-poll the user's newest job
    1       GET /v1/jobs/{id}/events             its event stream until `done` or EVENTS
                                                 events; the time is the whole read
    2       GET /v1/jobs?limit                   list the user's newest 20 jobs

Outcomes: 2xx succeed. A 429 (rate limit, queued-jobs quota, too many waits per client) is
an outcome of its own: it is counted under "<name> [429]", not as a failure, and the user
backs off for its Retry-After (at most 10 s). Any 5xx, another 4xx, a timeout or a broken
connection is a failure.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import Any

import gevent
from locust import FastHttpUser, task
from locust.exception import StopTest

__all__ = ["CollectqClient", "LoadConfig", "config"]

POLL_MEMORY = 50  # job ids a user remembers and polls
IDEMPOTENT_MEMORY = 20  # (key, body, job id) a user may repeat
RETRY_AFTER_MAX = 10.0
STREAM_GRACE = 5.0  # s an event stream may stay open beyond a long-poll's wait
_USERS = itertools.count()  # hands each user its key
_SUBMITS = itertools.count()  # "{n}" in a target


@dataclass(frozen=True)
class LoadConfig:
    keys: tuple[str, ...]
    targets: tuple[str, ...]
    collectors: tuple[str, ...]
    think: tuple[float, float]
    wait: int
    events: int
    verify_tls: bool


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@cache
def config() -> LoadConfig:
    """The settings from the environment (read once, when the first user starts)."""
    env = os.environ
    low, high = (float(v) for v in env.get("COLLECTQ_LOAD_THINK", "1,3").split(","))
    return LoadConfig(
        keys=_list(env.get("COLLECTQ_API_KEY", "")),
        targets=_list(env.get("COLLECTQ_LOAD_TARGETS", "example.com")),
        collectors=_list(env.get("COLLECTQ_LOAD_COLLECTORS", "dns")),
        think=(low, high),
        wait=int(env.get("COLLECTQ_LOAD_WAIT", "5")),
        events=int(env.get("COLLECTQ_LOAD_EVENTS", "20")),
        verify_tls=env.get("COLLECTQ_LOAD_VERIFY_TLS", "1") != "0",
    )


class CollectqClient(FastHttpUser):
    """One client of the API: submits jobs and follows its own."""

    insecure = False  # verify TLS (locust's default does not); COLLECTQ_LOAD_VERIFY_TLS=0

    def __init__(self, environment: Any) -> None:
        cfg = config()
        if not cfg.keys:
            raise StopTest("set COLLECTQ_API_KEY to an API key of the deployment")
        self.insecure = not cfg.verify_tls
        super().__init__(environment)
        self.cfg = cfg
        self.headers = {"Authorization": f"Bearer {cfg.keys[next(_USERS) % len(cfg.keys)]}"}
        self.jobs: deque[str] = deque(maxlen=POLL_MEMORY)
        self.idempotent: deque[tuple[str, dict[str, Any], str]] = deque(maxlen=IDEMPOTENT_MEMORY)
        self.backoff = 0.0  # s: a 429's Retry-After, taken as the next pause

    def wait_time(self) -> float:
        """Think time; after a 429, its Retry-After instead (if longer)."""
        pause, self.backoff = max(self.backoff, random.uniform(*self.cfg.think)), 0.0
        return pause

    # -- the mix ---------------------------------------------------------------------------

    @task(5)
    def submit(self) -> None:
        roll = random.random()
        if roll < 0.1 and self.idempotent:
            key, body, first = random.choice(self.idempotent)
            self._submit(body, key, "/v1/jobs [idempotent repeat]", expect=first)
            return
        body = self._job()
        if roll < 0.3:
            key = f"load-{random.getrandbits(64):016x}"
            job_id = self._submit(body, key, "/v1/jobs")
            if job_id:
                self.idempotent.append((key, body, job_id))
        else:
            self._submit(body, None, "/v1/jobs")

    @task(1)
    def submit_and_wait(self) -> None:
        path = f"/v1/jobs?wait={self.cfg.wait}"
        self._submit(self._job(), None, "/v1/jobs?wait", path=path)

    @task(6)
    def poll(self) -> None:
        if not self.jobs:
            return self.submit()
        job_id = random.choice(self.jobs)
        with self._get(f"/v1/jobs/{job_id}", "/v1/jobs/{id}") as resp:
            self._judge(resp, "/v1/jobs/{id}", ok=(200,))

    @task(2)
    def long_poll(self) -> None:
        if not self.jobs:
            return self.submit()
        path = f"/v1/jobs/{self.jobs[-1]}?wait={self.cfg.wait}"
        with self._get(path, "/v1/jobs/{id}?wait") as resp:
            self._judge(resp, "/v1/jobs/{id}?wait", ok=(200,))

    @task(1)
    def events(self) -> None:
        if not self.jobs:
            return self.submit()
        name = "/v1/jobs/{id}/events"
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        t0 = time.perf_counter()
        with self.client.get(
            f"/v1/jobs/{self.jobs[-1]}/events",
            name=name,
            headers={**self.headers, **headers},
            stream=True,
            catch_response=True,
        ) as resp:
            if self._judge(resp, name, ok=(200,)):
                read, done, ended = self._read_events(resp)
                if ended and not done:
                    resp.failure(f"the server ended the stream after {read} events, no `done`")
                resp.request_meta["response_time"] = (time.perf_counter() - t0) * 1000
            resp.release()  # closes the connection when the stream was left unfinished

    @task(2)
    def list_jobs(self) -> None:
        with self._get("/v1/jobs?limit=20", "/v1/jobs?limit") as resp:
            self._judge(resp, "/v1/jobs?limit", ok=(200,))

    # -- helpers ---------------------------------------------------------------------------

    def _job(self) -> dict[str, Any]:
        target = random.choice(self.cfg.targets).replace("{n}", str(next(_SUBMITS)))
        return {"target": target, "collectors": list(self.cfg.collectors)}

    def _get(self, path: str, name: str) -> Any:
        return self.client.get(path, name=name, headers=self.headers, catch_response=True)

    def _submit(
        self, body: dict[str, Any], key: str | None, name: str, expect: str = "", path: str = ""
    ) -> str:
        """POST one job (to `path`, default /v1/jobs); its id, or "" when it was not accepted."""
        headers = {**self.headers, "Idempotency-Key": key} if key else self.headers
        with self.client.post(
            path or "/v1/jobs", json=body, name=name, headers=headers, catch_response=True
        ) as resp:
            if not self._judge(resp, name, ok=(200, 202)):
                return ""
            job_id = str(resp.json().get("id", ""))
            if expect and job_id != expect:
                resp.failure(f"idempotent repeat answered {job_id}, not {expect}")
                return ""
            if not expect:
                self.jobs.append(job_id)
            return job_id

    def _judge(self, resp: Any, name: str, ok: tuple[int, ...]) -> bool:
        """Mark `resp` (inside its with-block); True when its body is the answer."""
        status = resp.status_code
        if status in ok:
            resp.success()
            return True
        if status == 429:
            resp.request_meta["name"] = f"{name} [429]"
            resp.success()
            retry_after = resp.headers.get("Retry-After", "1") if resp.headers else "1"
            try:
                self.backoff = min(RETRY_AFTER_MAX, float(retry_after))
            except ValueError:
                self.backoff = 1.0
            return False
        error = getattr(resp, "error", None)
        resp.failure(f"HTTP {status}" if status else f"no answer: {error!r}")
        return False

    def _read_events(self, resp: Any) -> tuple[int, bool, bool]:
        """Read a job's stream until `done`, `events` events or the time bound (a job
        still queued is no error). Returns: events read, `done` seen, the server ended it."""
        read, done, ended, buf = 0, False, False, b""
        with gevent.Timeout(self.cfg.wait + STREAM_GRACE, False):
            for chunk in resp.iter_content(4096, decode_content=False):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"event:"):
                        read += 1
                        done = done or line.split(b":", 1)[1].strip() == b"done"
                if done or read >= self.cfg.events:
                    break
            else:
                ended = True
        return read, done, ended
