"""Local TLS servers with trustme certificates.

Valid, expired, not yet valid, wrong host, self-signed.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import trustme


class TlsServer:
    """Accepts connections on 127.0.0.1 and completes the handshake with `cert`."""

    def __init__(self, cert: trustme.LeafCert) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.context)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextmanager
def tls_server(cert: trustme.LeafCert) -> Iterator[TlsServer]:
    server = TlsServer(cert)
    try:
        yield server
    finally:
        server.close()


def certificates() -> tuple[trustme.CA, dict[str, trustme.LeafCert]]:
    ca = trustme.CA()
    now = dt.datetime.now(dt.UTC)
    self_ca = trustme.CA()  # never trusted: its own cert served as the leaf
    self_signed = trustme.LeafCert(self_ca.private_key_pem.bytes(), self_ca.cert_pem.bytes(), [])
    return ca, {
        "valid": ca.issue_cert("localhost", "127.0.0.1", not_after=now + dt.timedelta(days=5)),
        "expired": ca.issue_cert(
            "localhost",
            "127.0.0.1",
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        ),
        "not_yet_valid": ca.issue_cert(
            "localhost",
            "127.0.0.1",
            not_before=now + dt.timedelta(days=10),
            not_after=now + dt.timedelta(days=40),
        ),
        "wrong_host": ca.issue_cert("other.example", not_after=now + dt.timedelta(days=90)),
        "self_signed": self_signed,
    }
