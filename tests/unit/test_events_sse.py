"""The SSE body and the hub's fan-out without Redis: ordering, overlap, end, keep-alive."""

from __future__ import annotations

from contextlib import ExitStack

from app.events.hub import QUEUE_MAX, EventHub, Subscription
from app.events.sse import KEEPALIVE, SseBody, format_event, valid_event_id
from app.jobs.events import Event, parse_entry, stream_id_key


def _ev(eid: str, status: str = "running", kind: str = "state", job: str = "j_1") -> Event:
    return Event(eid, kind, job, "o1", "http" if kind == "state" else "", status, 1, "t")


def test_entries_parse_from_bytes_and_frames_hide_the_owner() -> None:
    fields = {b"kind": b"done", b"job": b"j_1", b"owner": b"o1", b"status": b"failed"}
    event = parse_entry(b"5-1", fields)
    assert event.final
    frame = format_event(event).decode()
    assert frame == 'id: 5-1\nevent: done\ndata: {"job_id":"j_1","status":"failed","at":""}\n\n'
    assert "o1" not in format_event(_ev("5-2")).decode()


def test_stream_ids_compare_numerically_and_bad_ids_start_afresh() -> None:
    assert stream_id_key("10-0") > stream_id_key("9-5")
    assert valid_event_id("1796019207655-1") == "1796019207655-1"
    for bad in (None, "", "abc", "1-2-3", "x-1"):
        assert valid_event_id(bad) is None


def test_history_then_live_without_duplicates_until_done() -> None:
    sub = Subscription("j_1", None)
    sub.offer([_ev("2-0"), _ev("3-0", "retrying")])  # 2-0 arrived live and is in the history
    sub.offer([_ev("4-0", "succeeded", "done"), _ev("5-0", "succeeded", "done")])
    closed: list[bool] = []
    stack = ExitStack()
    stack.callback(lambda: closed.append(True))
    body = SseBody(
        sub,
        [_ev("1-0", "queued"), _ev("2-0")],
        stack,
        keepalive=5,
        max_life=5,
        job_id="j_1",
        final_status=lambda: None,
    )
    chunks = list(body)
    body.close()
    ids = [line for chunk in chunks[1:] for line in chunk.split(b"\n") if line.startswith(b"id:")]
    assert ids == [b"id: 1-0", b"id: 2-0", b"id: 3-0", b"id: 4-0"]  # ends at the first done
    assert len(chunks) == 4  # retry, the 2 history frames, then ONE write for the live batch
    assert closed == [True]  # the slot, the subscription, the gauge: released


def test_a_final_job_without_kept_events_still_gets_done() -> None:
    body = SseBody(
        Subscription("j_1", None),
        [],
        ExitStack(),
        keepalive=5,
        max_life=5,
        job_id="j_1",
        final_status=lambda: "cancelled",
    )
    frames = list(body)
    assert frames[-1] == b'event: done\ndata: {"job_id":"j_1","status":"cancelled"}\n\n'


def test_silence_sends_keepalives_and_a_closed_subscription_ends_the_stream() -> None:
    sub = Subscription(None, "o1")
    body = iter(SseBody(sub, [], ExitStack(), keepalive=0.01, max_life=5))
    assert next(body).startswith(b"retry:")
    assert next(body) == KEEPALIVE
    sub.close()
    assert list(body) == []


def test_the_hub_fans_out_by_job_owner_and_all() -> None:
    hub = EventHub(lambda: None, "ev-all")  # type: ignore[arg-type,return-value]
    job, mine, theirs, everything = (
        Subscription("j_1", None),
        Subscription(None, "o1"),
        Subscription(None, "o2"),
        Subscription(None, None),
    )
    for sub in (job, mine, theirs, everything):
        hub._slot(sub).add(sub)
    hub.dispatch([_ev("1-0"), _ev("2-0", job="j_2")])
    assert [len(sub.take(0)) for sub in (job, mine, theirs, everything)] == [1, 2, 0, 2]


def test_a_reader_too_slow_is_closed_and_a_stale_wakeup_loses_nothing() -> None:
    sub = Subscription(None, "o1")
    sub.offer([_ev("1-0")])
    sub._ready.set()  # a set left over from an earlier batch
    assert [e.id for e in sub.take(1)] == ["1-0"]
    assert sub.take(0.01) == []  # nothing pending: waits out its time
    sub.offer([_ev(f"{i}-0") for i in range(2, 3 + QUEUE_MAX)])
    assert sub.closed
    assert sub.take(1) == []


def test_a_stream_writes_at_most_once_per_period_and_a_lone_event_at_once() -> None:
    import threading
    import time

    from app.events.sse import WRITE_EVERY

    sub = Subscription(None, "o1")
    body = iter(SseBody(sub, [], ExitStack(), keepalive=5, max_life=5))
    assert next(body).startswith(b"retry:")
    sub.offer([_ev("1-0")])
    assert b"id: 1-0" in next(body)  # nothing written before: at once

    def burst() -> None:  # a job's next events arrive one by one, just after that write
        for eid in ("2-0", "3-0", "4-0"):
            sub.offer([_ev(eid)])
            time.sleep(WRITE_EVERY / 50)

    sender = threading.Thread(target=burst)
    sender.start()
    chunk = next(body)
    sender.join()
    assert chunk.count(b"id: ") == 3  # gathered into one write, not three
    sub.close()
