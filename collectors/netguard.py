"""The outbound network guard (SSRF).

What gets checked is the address a socket really connects to: names are
resolved here, every resolved address is checked, and the socket connects to
that checked address (never resolving again), so DNS rebinding cannot slip a
second, internal answer in between. Callers come back through here for every
redirect hop.

Only global unicast addresses pass, unless the policy's allowlist covers them.
Python's ``ipaddress`` tables differ between patch releases (3.11.7 calls
``64:ff9b:1::1`` and ``3fff::1`` global), so the special-purpose ranges are
listed here explicitly and ``is_global`` is only the last word. IPv6 forms
that carry an IPv4 address (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4,
Teredo) are judged by the IPv4 address(es) they lead to.

Cloud metadata and host-agent addresses a workload reaches without any route
of its own are all blocked (docs/decisions.md, "Hardening: network and
collectors"): 169.254.169.254 (AWS, GCP, Azure IMDS, OpenStack, DigitalOcean,
Oracle, Hetzner), 169.254.170.2 (AWS ECS task metadata), 169.254.169.123 (AWS
time sync) and 169.254.0.23 (Tencent) as link-local; fd00:ec2::254 (AWS IMDS
over IPv6) as unique local; 100.100.100.200 (Alibaba) as shared address space;
192.0.0.192 (Oracle classic) as IETF-reserved; and 168.63.129.16 (Azure's
WireServer / host agent, which Python calls global) by its own row below.

With ``NetworkPolicy.conceal_internal`` (staging/prod) a refusal names the class
of the address (private, loopback, link-local, ...) but never the address, so
the errors cannot be used to map what internal names resolve to.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

from collectors.base import (
    BlockedAddress,
    InvalidTarget,
    NetworkPolicy,
    TargetConnectError,
    TargetTimeout,
)

__all__ = [
    "IPAddress",
    "address_class",
    "SockAddr",
    "check_address",
    "check_url",
    "embedded_ipv4",
    "guarded_connection",
    "resolve_and_check",
    "target_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SockAddr = tuple[Any, ...]
SocketOption = tuple[int, int, int | bytes]

_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

# Special-purpose ranges (IANA registries), most specific first. Anything not listed
# here still has to satisfy `is_global` (v4) or lie in 2000::/3 (v6).
_SPECIAL: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_v4("0.0.0.0/8"), "unspecified ('this network')"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("100.64.0.0/10"), "shared address space (CGNAT)"),
    # Azure's WireServer: reached like metadata, yet outside every special-purpose range
    (_v4("168.63.129.16/32"), "cloud host agent (metadata)"),
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("169.254.0.0/16"), "link-local"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.0.0.0/24"), "reserved (IETF protocol assignments)"),
    (_v4("192.0.2.0/24"), "reserved (documentation)"),
    (_v4("192.88.99.0/24"), "reserved (6to4 relay anycast)"),
    (_v4("192.168.0.0/16"), "private"),
    (_v4("198.18.0.0/15"), "reserved (benchmarking)"),
    (_v4("198.51.100.0/24"), "reserved (documentation)"),
    (_v4("203.0.113.0/24"), "reserved (documentation)"),
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("255.255.255.255/32"), "broadcast"),
    (_v4("240.0.0.0/4"), "reserved"),
    (_v6("::/128"), "unspecified"),
    (_v6("::1/128"), "loopback"),
    (_v6("64:ff9b:1::/48"), "local-use NAT64 (RFC 8215)"),
    (_v6("100::/64"), "reserved (discard-only)"),
    (_v6("2001:db8::/32"), "reserved (documentation)"),
    (_v6("2001::/23"), "reserved (IETF protocol assignments)"),
    (_v6("3fff::/20"), "reserved (documentation)"),
    (_v6("fc00::/7"), "private (unique local)"),
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "site-local (deprecated)"),
    (_v6("ff00::/8"), "multicast"),
)
_GLOBAL_UNICAST_V6 = _v6("2000::/3")


def _last32(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]


def _teredo(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    server, client = ip.teredo or (None, None)
    return [a for a in (server, client) if a is not None]


def _sixtofour(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    return [ip.sixtofour] if ip.sixtofour is not None else []


# v4-carrying forms: (prefix, how to extract, whether the v6 address itself is judged too).
# "Transparent" forms lead straight to their IPv4 address, so only that one is judged;
# local-use NAT64 is a site-specific translator, so the v6 address must pass on its own too
# (the /96 layout is assumed only to name the embedded address in the error).
_Extract = Callable[[ipaddress.IPv6Address], list[ipaddress.IPv4Address]]
_V4_CARRIERS: tuple[tuple[ipaddress.IPv6Network, _Extract, bool], ...] = (
    (_v6("::ffff:0:0/96"), _last32, True),  # IPv4-mapped
    (_v6("::ffff:0:0:0/96"), _last32, True),  # IPv4-translated (SIIT)
    (_v6("64:ff9b::/96"), _last32, True),  # well-known NAT64
    (_v6("64:ff9b:1::/48"), _last32, False),  # local-use NAT64
    (_v6("2002::/16"), _sixtofour, True),  # 6to4
    (_v6("2001::/32"), _teredo, True),  # Teredo: server and (de-obfuscated) client
)


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 address(es) a v6 address leads to, if it is one of the v4-carrying forms."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    for prefix, extract, _ in _V4_CARRIERS:
        if ip in prefix:
            return extract(ip)
    # IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are not that form.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return _last32(ip)
    return []


def _why_not_global(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is one."""
    for network, reason in _SPECIAL:
        if ip.version == network.version and ip in network:
            return reason
    if isinstance(ip, ipaddress.IPv6Address):
        return None if ip in _GLOBAL_UNICAST_V6 else "outside global unicast (2000::/3)"
    return None if ip.is_global else "not globally routable"


def _allowed(ip: IPAddress, policy: NetworkPolicy) -> bool:
    return any(ip.version == net.version and ip in net for net in policy.allow)


def check_address(ip: IPAddress, policy: NetworkPolicy, *, subject: str | None = None) -> None:
    """Raise BlockedAddress unless `ip` may be connected to under `policy`.

    `subject` is what the caller asked for (a host name), named in a concealed detail.
    """
    refusal = _refusal(ip, policy)
    if refusal is None:
        return
    detail, address_class = refusal
    if policy.conceal_internal:
        what = f"{subject} resolves to an address that" if subject else "the address"
        detail = f"{what} is {address_class} (address withheld); not in the allowlist"
    raise BlockedAddress(detail)


def address_class(ip: IPAddress, policy: NetworkPolicy) -> str | None:
    """The class of `ip` (``private``, ``loopback``, ...) if `policy` blocks it, else None."""
    refusal = _refusal(ip, policy)
    return None if refusal is None else refusal[1]


def _refusal(ip: IPAddress, policy: NetworkPolicy) -> tuple[str, str] | None:
    """(full detail, class of the address) if `ip` is blocked under `policy`, else None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(int(ip))  # the zone does not change what the address is
    if _allowed(ip, policy):  # an allowlisted v6 range is the operator's explicit choice
        return None
    transparent = next((t for p, _, t in _V4_CARRIERS if ip in p), True)
    embedded = embedded_ipv4(ip)
    if embedded and not transparent:
        reason = _why_not_global(ip)
        if reason is not None:
            carried = ", ".join(str(a) for a in embedded)
            return f"{ip} (embeds {carried}) is {reason}; not in the allowlist", reason
    for inner in embedded:
        if _allowed(inner, policy):
            continue
        reason = _why_not_global(inner)
        if reason is not None:
            detail = f"{ip} embeds {inner}, which is {reason}; not in the allowlist"
            return detail, f"an IPv6 form of a {reason} IPv4 address"
    if not embedded:
        reason = _why_not_global(ip)
        if reason is not None:
            return f"{ip} is {reason}; not in the allowlist", reason
    return None


def check_url(url: str) -> SplitResult:
    """Parse `url`, refusing schemes other than http(s), credentials and control characters."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        # urlsplit silently drops tabs and newlines; refuse rather than guess what was meant.
        raise InvalidTarget(f"URL {url!r} contains control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidTarget(f"URL {url!r} is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidTarget(f"scheme {parts.scheme!r} is not allowed (http, https only)")
    if parts.username is not None or parts.password is not None:
        raise InvalidTarget("URLs with credentials are not allowed")
    if not parts.hostname:
        raise InvalidTarget(f"URL {url!r} has no host")
    if port == 0:
        raise InvalidTarget(f"URL {url!r} has port 0")
    return parts


def target_url(target: str) -> str:
    """The URL for `target`: URLs as given, a bare host (or IP) as https://host/."""
    target = target.strip()
    if "://" in target:
        return target
    try:
        if isinstance(ipaddress.ip_address(target.strip("[]")), ipaddress.IPv6Address):
            target = f"[{target.strip('[]')}]"
    except ValueError:
        pass
    return f"https://{target}" + ("" if "/" in target else "/")


def _numeric(sockaddr: SockAddr) -> IPAddress:
    # getaddrinfo spells link-local v6 results with their zone ("fe80::1%eth0").
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


def resolve_and_check(
    host: str, port: int, policy: NetworkPolicy
) -> list[tuple[socket.AddressFamily, SockAddr]]:
    """Resolve `host` and check every address; refuse if any one is blocked.

    Numeric spellings getaddrinfo accepts (``2130706433``, ``0x7f000001``,
    ``0177.0.0.1``) come back as the real address and are checked as such.
    Refusing on any blocked answer, not just skipping it, keeps a name that
    mixes public and internal answers from being used as a probe.
    """
    host = host.strip("[]")
    if not host:
        raise InvalidTarget("empty host")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise InvalidTarget(f"{host!r} does not resolve: {exc.strerror}") from exc
        raise TargetConnectError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    except (UnicodeError, ValueError) as exc:  # bad IDNA label, embedded NUL
        raise InvalidTarget(f"{host!r} is not a valid host name: {exc}") from exc
    out: list[tuple[socket.AddressFamily, SockAddr]] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        check_address(_numeric(sockaddr), policy, subject=repr(host))
        if (family, sockaddr) not in out:
            out.append((family, sockaddr))
    if not out:
        raise TargetConnectError(f"{host!r} has no IPv4 or IPv6 address")
    return out


def guarded_connection(
    host: str,
    port: int,
    policy: NetworkPolicy,
    timeout: float | None,
    *,
    socket_options: Sequence[SocketOption] | None = None,
) -> socket.socket:
    """A TCP socket connected to a checked address of `host`.

    Addresses are tried in resolver order within one overall `timeout`. The
    socket connects to the very sockaddr that was checked, so nothing resolves
    `host` a second time.
    """
    addresses = resolve_and_check(host, port, policy)
    deadline = None if timeout is None else time.monotonic() + timeout
    errors: list[OSError] = []
    for family, sockaddr in addresses:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # e.g. no IPv6 on this host
            errors.append(exc)
            continue
        try:
            for level, name, value in socket_options or ():
                sock.setsockopt(level, name, value)
            sock.settimeout(remaining)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        sock.settimeout(timeout)  # the caller's per-operation timeout from here on
        return sock
    if not errors or all(isinstance(e, TimeoutError) for e in errors):
        raise TargetTimeout(f"connecting to {host}:{port} timed out after {timeout}s")
    raise TargetConnectError(f"cannot connect to {host}:{port}: {errors[-1]}")
