"""A canary: TCP and UDP listeners on one loopback port that count whoever reaches them.

It stands where a blocked connection would land. A probe passes only if the
canary's count stays zero — and a control probe with the address allowed shows
the canary really is reachable, so a zero is not an accident.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["Canary"]


class Canary:
    """Listen on `hosts` (same port on each); `hits` counts TCP connects and UDP datagrams."""

    def __init__(self, *hosts: str) -> None:
        self.hits = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.port = 0
        for host in hosts or ("127.0.0.1",):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, self.port))
            self.port = tcp.getsockname()[1]
            tcp.listen(16)
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((host, self.port))
            self._socks += [tcp, udp]
        for sock in self._socks:
            threading.Thread(target=self._count, args=(sock,), daemon=True).start()

    def _count(self, sock: socket.socket) -> None:
        while True:
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    sock.recvfrom(4096)
            except OSError:
                return
            with self._lock:
                self.hits += 1

    def close(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> Canary:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
