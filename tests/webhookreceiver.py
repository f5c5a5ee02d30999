"""A webhook receiver on 127.0.0.1 for tests: answers each path from a script, records all."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    base: str
    # path → answers, one per request: (status, headers); the last one repeats
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    lock = threading.Lock()
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                seen = len(receiver.on(self.path))
                receiver.received.append(
                    Received(self.path, dict(self.headers), body, time.monotonic())
                )
                answers = receiver.script.get(self.path) or [(200, {})]
                status, headers = answers[min(seen, len(answers) - 1)]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            payload = f"answer {status}".encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a callback URL names its host (no IP literal): localhost, which the test allowlist
    # (127.0.0.0/8, ::1) lets the network guard reach
    receiver = Receiver(f"http://localhost:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
