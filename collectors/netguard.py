"""The outbound network guard (SSRF).

The address a socket really connects to is what gets checked: names are
resolved here, every resolved address is checked, and the socket connects to
that checked address (never resolving again), so DNS rebinding cannot slip a
second, internal answer in between. Redirects come back through here hop by hop.

Only global unicast addresses pass, unless the policy's allowlist covers them.
Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
6to4, Teredo) are judged by the IPv4 address they lead to.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import SplitResult, urlsplit

from collectors.base import (
    BlockedAddress,
    InvalidTarget,
    NetworkPolicy,
    TargetConnectError,
    TargetTimeout,
)

__all__ = ["IPAddress", "check_address", "check_url", "guarded_connection", "resolve_and_check"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_6TO4 = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a v6 address stands for, if it is one of the v4-carrying forms."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address: where the packets would end up
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(packed[-4:])
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[-4:])  # IPv4-compatible (deprecated) ::a.b.c.d
    return None


def _why_not_global(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is one."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared address space (CGNAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def check_address(ip: IPAddress, policy: NetworkPolicy) -> None:
    """Raise BlockedAddress unless `ip` may be connected to under `policy`."""
    target: IPAddress = ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        target = _embedded_ipv4(ip) or ip
    if any(target.version == net.version and target in net for net in policy.allow):
        return
    reason = _why_not_global(target)
    if reason is not None:
        via = f" (via {ip})" if target != ip else ""
        raise BlockedAddress(f"{target}{via} is {reason}; not in the network allowlist")


def check_url(url: str) -> SplitResult:
    """Parse `url`, refusing other schemes than http(s) and embedded credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidTarget(f"scheme {parts.scheme!r} is not allowed (http, https only)")
    if parts.username is not None or parts.password is not None:
        raise InvalidTarget("URLs with credentials are not allowed")
    if not parts.hostname:
        raise InvalidTarget(f"URL {url!r} has no host")
    try:
        parts.port  # noqa: B018 - raises on an invalid port
    except ValueError as exc:
        raise InvalidTarget(f"URL {url!r} has an invalid port") from exc
    return parts


SockAddr = tuple[Any, ...]


def resolve_and_check(
    host: str, port: int, policy: NetworkPolicy
) -> list[tuple[socket.AddressFamily, SockAddr]]:
    """Resolve `host` and check every address; refuse if any one is blocked.

    Refusing on any blocked answer (not just skipping it) keeps a name that
    mixes public and internal answers from being used as a probe.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetConnectError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    out: list[tuple[socket.AddressFamily, SockAddr]] = []
    for family, _, _, _, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        check_address(ip, policy)
        out.append((family, sockaddr))
    if not out:
        raise TargetConnectError(f"{host!r} has no address")
    return out


def guarded_connection(
    host: str, port: int, policy: NetworkPolicy, timeout: float | None
) -> socket.socket:
    """A TCP socket connected to a checked address of `host` (tried in resolver order)."""
    last: OSError | None = None
    for family, sockaddr in resolve_and_check(host, port, policy):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(sockaddr)
            return sock
        except TimeoutError as exc:
            sock.close()
            raise TargetTimeout(f"connecting to {host}:{port} timed out after {timeout}s") from exc
        except OSError as exc:
            sock.close()
            last = exc
    raise TargetConnectError(f"cannot connect to {host}:{port}: {last}")
