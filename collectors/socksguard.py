"""A SOCKS5 relay on loopback that opens every connection through the network guard.

A browser resolves names and follows redirects itself, and Playwright's request
interception does not see redirect hops or connections without a request
(preconnect, WebSocket). So the browser context is pointed at this relay
instead: Chromium sends it every connection (``socks5://``, host names
unresolved, loopback not bypassed), and the relay connects with
:func:`collectors.netguard.guarded_connection` — the same check, on the same
resolved address, as every other collector. A refused connection gets SOCKS
reply 2 ("not allowed by ruleset") and is recorded for the job's result.

One relay per browser context (so per job): what it records belongs to that job.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass
from types import TracebackType

from collectors import netguard
from collectors.base import BlockedAddress, CollectorError, InvalidTarget, NetworkPolicy

__all__ = ["Refusal", "SocksGuard"]

_VERSION = 5
_NO_AUTH = 0
_CONNECT = 1
_ATYP_V4, _ATYP_NAME, _ATYP_V6 = 1, 3, 4
_OK, _NOT_ALLOWED, _HOST_UNREACHABLE = 0, 2, 4
_CMD_UNSUPPORTED, _ATYP_UNSUPPORTED = 7, 8
_HANDSHAKE_TIMEOUT = 5.0
_CHUNK = 64 * 1024
MAX_REFUSALS = 100


@dataclass(frozen=True)
class Refusal:
    """A connection the guard refused: where to, and why."""

    host: str
    port: int
    error: CollectorError

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "error": self.error.to_dict()}


class _Closed(Exception):
    pass


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Closed
        buf += chunk
    return bytes(buf)


def _reply(sock: socket.socket, code: int) -> None:
    # The bound address is of no use to the browser; 0.0.0.0:0 is what most servers send.
    sock.sendall(bytes([_VERSION, code, 0, _ATYP_V4]) + bytes(6))


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(_CHUNK):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class SocksGuard:
    """A guarded SOCKS5 relay on 127.0.0.1 (an ephemeral port) for as long as it is open."""

    def __init__(self, policy: NetworkPolicy, connect_timeout: float) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.refusals: list[Refusal] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closing = False

    @property
    def url(self) -> str:
        if self._listener is None:
            raise RuntimeError("SocksGuard.start() was not called")
        return f"socks5://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> SocksGuard:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        threading.Thread(
            target=self._accept, args=(self._listener,), name="socksguard", daemon=True
        ).start()
        return self

    def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        with self._lock:
            self._closing = True
            socks, self._open = list(self._open), set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> SocksGuard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def refusal_for(self, host: str) -> Refusal | None:
        """The last refusal of a connection to `host` (a name or an address), if any."""
        wanted = host.strip("[]").lower()
        with self._lock:
            return next((r for r in reversed(self.refusals) if r.host.lower() == wanted), None)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closing:
                sock.close()
                return False
            self._open.add(sock)
            return True

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)
        for sock in socks:
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            if self._track(client):
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(_HANDSHAKE_TIMEOUT)
            upstream = self._handshake(client)
            if upstream is None or not self._track(upstream):
                return
            client.settimeout(None)
            upstream.settimeout(None)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()
        except (OSError, _Closed):
            pass
        finally:
            self._forget(client, *([upstream] if upstream else []))

    def _handshake(self, client: socket.socket) -> socket.socket | None:
        """Read the greeting and the CONNECT request; return the guarded upstream socket."""
        version, n_methods = _recv_exactly(client, 2)
        methods = _recv_exactly(client, n_methods)
        if version != _VERSION or _NO_AUTH not in methods:
            client.sendall(bytes([_VERSION, 0xFF]))
            return None
        client.sendall(bytes([_VERSION, _NO_AUTH]))
        _, command, _, atyp = _recv_exactly(client, 4)
        if atyp == _ATYP_V4:
            host = socket.inet_ntop(socket.AF_INET, _recv_exactly(client, 4))
        elif atyp == _ATYP_V6:
            host = socket.inet_ntop(socket.AF_INET6, _recv_exactly(client, 16))
        elif atyp == _ATYP_NAME:
            raw = _recv_exactly(client, _recv_exactly(client, 1)[0])
            try:
                host = raw.decode("idna")
            except UnicodeError:
                host = raw.decode("latin-1")  # refused below as an invalid host name
        else:
            _reply(client, _ATYP_UNSUPPORTED)
            return None
        (port,) = struct.unpack("!H", _recv_exactly(client, 2))
        if command != _CONNECT:
            _reply(client, _CMD_UNSUPPORTED)  # no BIND, no UDP ASSOCIATE
            return None
        try:
            upstream = netguard.guarded_connection(host, port, self.policy, self.connect_timeout)
        except (BlockedAddress, InvalidTarget) as exc:
            with self._lock:
                if len(self.refusals) < MAX_REFUSALS:
                    self.refusals.append(Refusal(host, port, exc))
            _reply(client, _NOT_ALLOWED)
            return None
        except CollectorError:
            _reply(client, _HOST_UNREACHABLE)
            return None
        with self._lock:
            self.connections += 1
        _reply(client, _OK)
        return upstream
