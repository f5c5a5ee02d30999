"""The soak's targets, all on 127.0.0.1: HTTP sites (fast, slow, a page for screenshots;
one that always fails; one that flaps), the DNS server, a TLS server, a webhook receiver.

The failing and the flapping site listen on ports of their own: a breaker is per origin,
and one that a failing path opened must not refuse the fast paths too.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import free_port
from tests.dnsserver import dns_server
from tests.tlsserver import certificates, tls_server
from tests.webhookreceiver import Receiver, webhook_receiver

__all__ = ["Targets", "running_targets"]

PAGE = "<title>soak</title><body style='background:#3366cc'><h1>soak</h1></body>"


@dataclass
class Targets:
    site: str  # http://localhost:P (fast, slow, page)
    failing: str  # always 500
    flapping: str  # 500, 200, 500, ...
    dns_port: int
    tls_port: int
    ca_pem: str
    webhooks: Receiver


def _slow(_: Request) -> Response:
    time.sleep(1.5)
    return Response("slow", content_type="text/plain")


def _flapper() -> Any:
    counter, lock = itertools.count(), threading.Lock()

    def flap(_: Request) -> Response:
        with lock:
            n = next(counter)
        return Response("flap", status=500 if n % 2 == 0 else 200, content_type="text/plain")

    return flap


def _server() -> HTTPServer:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    return server


@contextmanager
def running_targets() -> Iterator[Targets]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    with ExitStack() as stack:
        site, failing, flapping = _server(), _server(), _server()
        for server in (site, failing, flapping):
            stack.callback(server.stop)
        site.expect_request("/fast").respond_with_data("fast", content_type="text/plain")
        site.expect_request("/slow").respond_with_handler(_slow)
        site.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
        failing.expect_request("/fail").respond_with_data("no", status=500)
        flapping.expect_request("/flap").respond_with_handler(_flapper())
        dns_port = free_port()
        stack.enter_context(dns_server(dns_port))
        ca, certs = certificates()
        tls = stack.enter_context(tls_server(certs["valid"]))
        receiver = stack.enter_context(webhook_receiver())
        yield Targets(
            site=f"http://localhost:{site.port}",
            failing=f"http://localhost:{failing.port}",
            flapping=f"http://localhost:{flapping.port}",
            dns_port=dns_port,
            tls_port=tls.port,
            ca_pem=ca.cert_pem.bytes().decode(),
            webhooks=receiver,
        )
