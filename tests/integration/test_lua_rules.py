"""The store's Lua scripts decide exactly as Python does, on every combination (real Redis).

`schemas.status` is the one definition of the statuses, the terminal sets and the
final-status rule; the scripts are rendered from it. These tests run the scripts
in Redis and compare each decision with the Python one.
"""

from __future__ import annotations

import inspect
import itertools

import pytest

from app.jobs import lua
from app.jobs.store import JobStore
from schemas.status import (
    TERMINAL_COLLECTOR,
    TERMINAL_JOB,
    CollectorStatus,
    JobStatus,
    final_job_status,
)

pytestmark = pytest.mark.integration


def _job(store: JobStore, collectors: list[str]) -> str:
    job: str = store.create(
        owner="o", target="a.org", collectors=collectors, options={}, labels={}
    )["id"]
    return job


@pytest.mark.parametrize("size", [1, 2, 3])
def test_final_status_in_lua_matches_python_for_every_combination(
    store: JobStore, size: int
) -> None:
    checked = 0
    for states in itertools.product(list(CollectorStatus), repeat=size):
        names = [f"c{i}" for i in range(size)]
        job = _job(store, names)
        # the others as given, the last one running; then the last one records its state
        for name, state in zip(names[:-1], states[:-1], strict=True):
            store.redis.hset(store.keys.job(job), f"s:{name}", state)
        store.redis.hset(
            store.keys.job(job), mapping={f"s:{names[-1]}": "running", "status": "running"}
        )
        moved = store.record(job, names[-1], states[-1], 1, {})
        expected = final_job_status(states)
        got = (moved.outcome, moved.job_status, store.status(job))
        if expected is None:
            assert got == ("ok", JobStatus.RUNNING, JobStatus.RUNNING), states
        else:
            assert got == ("final", expected, expected), states
        checked += 1
    assert checked == len(CollectorStatus) ** size


def test_begin_treats_exactly_the_python_terminal_collector_states_as_done(
    store: JobStore,
) -> None:
    for state in CollectorStatus:
        job = _job(store, ["a"])
        store.redis.hset(store.keys.job(job), "s:a", state)
        begin = store.begin(job, "a", heartbeat_timeout=30, max_redeliveries=3)
        assert (begin.outcome == "done") == (state in TERMINAL_COLLECTOR), state


def test_close_leaves_exactly_the_python_terminal_job_states_alone(store: JobStore) -> None:
    for state in JobStatus:
        job = _job(store, ["a"])
        store.redis.hset(store.keys.job(job), "status", state)
        after = store.cancel(job)
        assert after == (state if state in TERMINAL_JOB else JobStatus.CANCELLED), state


def test_lua_sources_spell_no_status_of_their_own() -> None:
    source = inspect.getsource(lua)
    for state in {*JobStatus, *CollectorStatus}:
        assert f"'{state}'" not in source, state
        assert f'"{state}"' not in source, state
