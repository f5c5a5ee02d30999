"""The API's publisher (app/jobs/publisher.py) on the real broker: concurrent requests share
confirm waits, each returns only once its own messages were confirmed, and a message the
broker refuses (a nack) fails its request alone."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Queue

from app.jobs.broker import PUBLISH_ERRORS, confirming_publisher
from app.jobs.publisher import ConfirmingPublisher, MessageNacked

pytestmark = pytest.mark.integration


@pytest.fixture
def celery(service_env: dict[str, str]) -> Celery:
    app = Celery("t", broker=service_env["COLLECTQ_BROKER_URL"], set_as_current=False)
    app.conf.broker_transport_options = {"confirm_publish": True}
    return app


def _depth(url: str, queue: str) -> int:
    with Connection(url) as conn:
        channel: Any = conn.default_channel
        return int(channel.queue_declare(queue=queue, passive=True).message_count)


def test_concurrent_requests_share_confirm_waits_and_all_are_stored(
    celery: Celery, service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = service_env["COLLECTQ_BROKER_URL"]
    with Connection(url) as conn:
        Queue("pub-test", durable=True)(conn.default_channel).declare()
    publisher = confirming_publisher(celery, timeout=10)
    waits: list[int] = []
    settle = ConfirmingPublisher._await

    def counting_await(self: ConfirmingPublisher, batch: list[Any]) -> None:
        waits.append(len(batch))
        settle(self, batch)

    monkeypatch.setattr(ConfirmingPublisher, "_await", counting_await)
    returned: list[int] = []
    start = threading.Barrier(32)

    def client(n: int) -> None:
        start.wait()
        for i in range(10):

            def send(producer: Any, i: int = i) -> None:
                celery.send_task("t.noop", args=[n, i], queue="pub-test", producer=producer)

            publisher.publish(send)
            returned.append(1)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(returned) == 320
    assert _depth(url, "pub-test") == 320  # every confirmed message is in the queue
    assert sum(waits) == 320
    assert len(waits) < 320  # some requests shared a confirm wait
    print(f"\n320 publishes from 32 threads: {len(waits)} confirm waits, largest {max(waits)}")


def test_a_nacked_message_fails_its_request_alone(
    celery: Celery, service_env: dict[str, str]
) -> None:
    url = service_env["COLLECTQ_BROKER_URL"]
    # a queue that refuses (nacks) what exceeds 3 messages
    args = {"x-max-length": 3, "x-overflow": "reject-publish"}
    with Connection(url) as conn:
        Queue("pub-full", durable=True, queue_arguments=args)(conn.default_channel).declare()
    publisher = confirming_publisher(celery, timeout=10)

    def send(producer: Any) -> None:
        producer.publish({"n": 1}, exchange="", routing_key="pub-full")

    for _ in range(3):
        publisher.publish(send)
    with pytest.raises(MessageNacked):
        publisher.publish(send)
    assert issubclass(MessageNacked, PUBLISH_ERRORS)  # the API answers 503 and withdraws
    assert _depth(url, "pub-full") == 3


def test_a_send_that_raises_fails_only_its_own_request(celery: Celery) -> None:
    publisher = confirming_publisher(celery, timeout=10)

    def broken(producer: Any) -> None:
        raise ValueError("cannot build this message")

    with pytest.raises(ValueError, match="cannot build"):
        publisher.publish(broken)
    publisher.publish(lambda producer: None)  # the channel is still fine
