"""urllib3 connections that open their socket through the network guard.

Shared by the http collector and the webhook sender (`app.webhooks.sender`): a
name is resolved and every address checked by :func:`collectors.netguard.guarded_connection`,
and the socket connects to the checked address, so DNS rebinding cannot reach a
blocked one. urllib3 still knows the original host (Host header, SNI, certificate
checks use the name).
"""

from __future__ import annotations

import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from collectors import netguard
from collectors.base import NetworkPolicy

__all__ = ["GuardedConnection", "GuardedPoolManager"]


if TYPE_CHECKING:  # the mixin's super() is urllib3's connection; at runtime it is a plain mixin
    _ConnBase = HTTPConnection
else:
    _ConnBase = object


class GuardedConnection(_ConnBase):
    """Open the socket through the network guard; remember how long connecting took."""

    def __init__(self, *args: Any, policy: NetworkPolicy, **kwargs: Any) -> None:
        self.policy = policy
        self.connect_seconds = 0.0
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        # Replaces urllib3's create_connection(), which would resolve the name itself.
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        sock = netguard.guarded_connection(
            self.host, self.port, self.policy, timeout, socket_options=self.socket_options
        )
        sys.audit("http.client.connect", self, self.host, self.port)  # as urllib3 does
        return sock

    def connect(self) -> None:
        started = time.perf_counter()
        super().connect()  # for https this includes the handshake (SNI = self.host)
        self.connect_seconds += time.perf_counter() - started

    def pop_connect_seconds(self) -> float:
        """Connect time since the last call: 0 for a connection reused from the pool."""
        seconds, self.connect_seconds = self.connect_seconds, 0.0
        return seconds


class _GuardedHTTPConnection(GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(GuardedConnection, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedPoolManager(urllib3.PoolManager):
    """A PoolManager whose pools only make guarded connections under one policy."""

    def __init__(self, policy: NetworkPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        # Added after the pool key was computed: the key stays urllib3's own, and the
        # policy is the same for every pool of this manager anyway.
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["policy"] = self.policy
        return super()._new_pool(scheme, host, port, context)
