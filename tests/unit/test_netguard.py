"""The network guard's decisions. Nothing here opens a connection.

Non-loopback addresses are only ever *judged* here, never connected to; the
resolver is either fed numeric spellings (getaddrinfo answers those locally),
"localhost" (/etc/hosts), or replaced by a fake.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from collectors.base import (
    BlockedAddress,
    InvalidTarget,
    NetworkPolicy,
    TargetConnectError,
)
from collectors.netguard import check_address, check_url, embedded_ipv4, resolve_and_check

NONE = NetworkPolicy()
LOOPBACK_V4 = NetworkPolicy.from_strings(["127.0.0.0/8"])
LOOPBACK = NetworkPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),  # Python 3.11's tables call this global
        ("fec0::1", "site-local"),
        ("100::1", "discard"),
        ("4000::1", "outside global unicast"),
        # IPv6 forms that lead to an IPv4 address are judged by that address.
        ("::ffff:169.254.169.254", "link-local"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:0:7f00:1", "loopback"),  # IPv4-translated (SIIT)
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),
        ("::a9fe:a9fe", "link-local"),  # IPv4-compatible
        ("::7f00:1", "loopback"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("2001:0:7f00:1::1", "loopback"),  # Teredo, server 127.0.0.1
    ],
)
def test_non_global_addresses_are_blocked(address: str, reason: str) -> None:
    with pytest.raises(BlockedAddress, match=reason):
        check_address(ip(address), NONE)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "1.1.1.1",
        "2606:4700::1",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    ],
)
def test_global_addresses_pass(address: str) -> None:
    check_address(ip(address), NONE)  # a decision only: nothing is connected to


def test_detail_names_the_address_and_the_reason() -> None:
    with pytest.raises(BlockedAddress) as info:
        check_address(ip("127.0.0.1"), NONE)
    assert info.value.detail == "127.0.0.1 is loopback; not in the allowlist"
    assert info.value.to_dict() == {
        "type": "blocked_address",
        "detail": info.value.detail,
        "retryable": False,
    }


def test_detail_names_both_the_wrapper_and_the_embedded_address() -> None:
    with pytest.raises(BlockedAddress) as info:
        check_address(ip("::ffff:169.254.169.254"), NONE)
    assert info.value.detail == (
        "::ffff:a9fe:a9fe embeds 169.254.169.254, which is link-local; not in the allowlist"
    )


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::ffff:127.0.0.1", ["127.0.0.1"]),
        ("::ffff:0:7f00:1", ["127.0.0.1"]),
        ("::a9fe:a9fe", ["169.254.169.254"]),
        ("64:ff9b::a9fe:a9fe", ["169.254.169.254"]),
        ("64:ff9b:1::a9fe:a9fe", ["169.254.169.254"]),
        ("2002:a9fe:a9fe::1", ["169.254.169.254"]),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", ["65.54.227.120", "127.0.0.1"]),
        ("::1", []),
        ("::", []),
        ("2606:4700::1", []),
        ("127.0.0.1", []),
    ],
)
def test_embedded_ipv4_is_unwrapped(address: str, embedded: list[str]) -> None:
    assert [str(a) for a in embedded_ipv4(ip(address))] == embedded


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "::ffff:127.0.0.1",
        "::ffff:0:7f00:1",
        "64:ff9b::7f00:1",
        "::7f00:1",
    ],
)
def test_allowlisted_ipv4_network_admits_every_spelling(address: str) -> None:
    check_address(ip(address), LOOPBACK_V4)


@pytest.mark.parametrize(
    "address",
    [
        "::1",  # another family: 127.0.0.0/8 says nothing about it
        "169.254.169.254",
        "10.0.0.1",
        "::ffff:10.0.0.1",
        "fe80::1",
        "64:ff9b:1::7f00:1",  # a site's own translator: only an allowlisted v6 range admits it
    ],
)
def test_allowlist_admits_nothing_else(address: str) -> None:
    with pytest.raises(BlockedAddress):
        check_address(ip(address), LOOPBACK_V4)


def test_allowlisted_ipv6_network_is_taken_as_given() -> None:
    check_address(ip("::1"), LOOPBACK)
    check_address(ip("64:ff9b:1::a9fe:a9fe"), NetworkPolicy.from_strings(["64:ff9b:1::/48"]))
    check_address(ip("fd00::5"), NetworkPolicy.from_strings(["fd00::/64"]))


def test_empty_policy_blocks_what_the_allowlist_admitted() -> None:
    check_address(ip("10.1.2.3"), NetworkPolicy.from_strings(["10.0.0.0/8"]))
    with pytest.raises(BlockedAddress):
        check_address(ip("10.1.2.3"), NONE)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.org/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.org/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("//example.org/", "scheme"),
        ("example.org", "scheme"),
        ("https://user:pw@example.org/", "credentials"),
        ("https://user@example.org/", "credentials"),
        ("http://example.org\\@127.0.0.1/", "credentials"),
        ("http:///x", "no host"),
        ("http://example.org:0/", "port 0"),
        ("http://example.org:99999/", "malformed"),
        ("http://example.org:x/", "malformed"),
        ("http://[::1/", "malformed"),
        ("http://exa\nmple.org/", "control"),
        ("http://example.org/\r\nX: y", "control"),
    ],
)
def test_bad_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidTarget, match=why):
        check_url(url)


def test_good_urls_are_parsed() -> None:
    parts = check_url("https://Example.org:8443/p?q=1#f")
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "https",
        "example.org",
        8443,
        "/p",
    )
    assert check_url("http://[::1]:8080/").hostname == "::1"


# getaddrinfo turns these numeric spellings into the loopback address locally (no packet is
# sent); "localhost" comes from /etc/hosts.
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "localhost",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_spellings_resolve_and_are_blocked(host: str) -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        resolve_and_check(host, 80, NONE)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1"])
def test_numeric_spellings_are_checked_as_the_real_address(host: str) -> None:
    with pytest.raises(BlockedAddress, match=r"^127\.0\.0\.1 is loopback"):
        resolve_and_check(host, 80, NONE)
    [(family, sockaddr)] = resolve_and_check(host, 80, LOOPBACK)
    assert (family, sockaddr) == (socket.AF_INET, ("127.0.0.1", 80))


def _fake_resolver(answers: list[str]):
    def getaddrinfo(host, port, *args, **kwargs):
        out: list[tuple[Any, ...]] = []
        for a in answers:
            if ":" in a:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)))
        return out

    return getaddrinfo


def test_one_blocked_answer_among_public_ones_refuses_the_name(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver(["93.184.216.34", "10.0.0.1"]))
    with pytest.raises(BlockedAddress, match="10.0.0.1"):
        resolve_and_check("mixed.example", 80, NONE)


def test_every_answer_is_returned_when_all_pass(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver(["93.184.216.34", "2606:4700::1"]))
    assert resolve_and_check("public.example", 443, NONE) == [
        (socket.AF_INET, ("93.184.216.34", 443)),
        (socket.AF_INET6, ("2606:4700::1", 443, 0, 0)),
    ]


def test_link_local_answer_with_a_zone_is_judged_without_it(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver(["fe80::1%eth0"]))
    with pytest.raises(BlockedAddress, match="link-local"):
        resolve_and_check("zoned.example", 80, NONE)


@pytest.mark.parametrize(
    ("errno", "error"),
    [(socket.EAI_NONAME, InvalidTarget), (socket.EAI_AGAIN, TargetConnectError)],
)
def test_resolver_failures_map_to_collector_errors(monkeypatch, errno, error) -> None:
    def fail(*args, **kwargs):
        raise socket.gaierror(errno, "resolver says no")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(error, match="resolver says no"):
        resolve_and_check("nowhere.example", 80, NONE)


@pytest.mark.parametrize("host", ["", "[]", "a" * 64 + ".example", "bad\x00host"])
def test_unusable_host_names_are_invalid_targets(host: str) -> None:
    with pytest.raises(InvalidTarget):
        resolve_and_check(host, 80, NONE)


# --- issue 11: cloud metadata addresses; no internal-network oracle in hardened profiles ---


def conceal() -> NetworkPolicy:
    """The staging/prod policy: refusals name the class of an address, not the address."""
    return NetworkPolicy(conceal_internal=True)


# Cloud metadata / host-agent addresses a workload reaches without a route of its own.
# Judged only, never connected to.
CLOUD_METADATA = [
    ("169.254.169.254", "link-local"),  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, Oracle
    ("169.254.170.2", "link-local"),  # AWS ECS task metadata
    ("169.254.169.123", "link-local"),  # AWS time sync
    ("169.254.0.23", "link-local"),  # Tencent Cloud
    ("fd00:ec2::254", "private"),  # AWS IMDS over IPv6 (Nitro)
    ("100.100.100.200", "CGNAT"),  # Alibaba Cloud
    ("192.0.0.192", "reserved"),  # Oracle Cloud (classic)
    ("168.63.129.16", "cloud host agent"),  # Azure WireServer / host agent
    ("::ffff:168.63.129.16", "cloud host agent"),
    ("64:ff9b::a83f:8110", "cloud host agent"),  # NAT64 of 168.63.129.16
]


@pytest.mark.parametrize(("address", "reason"), CLOUD_METADATA)
def test_cloud_metadata_addresses_are_blocked(address: str, reason: str) -> None:
    with pytest.raises(BlockedAddress, match=reason):
        check_address(ip(address), NONE)


def test_the_host_agent_address_is_blocked_though_python_calls_it_global() -> None:
    assert ip("168.63.129.16").is_global  # why it needs its own row in the table
    with pytest.raises(BlockedAddress) as info:
        check_address(ip("168.63.129.16"), NONE)
    assert info.value.detail.startswith("168.63.129.16 is cloud host agent")
    check_address(ip("168.63.129.17"), NONE)  # its neighbours are ordinary global addresses
    check_address(ip("168.63.129.16"), NetworkPolicy.from_strings(["168.63.129.16/32"]))


@pytest.mark.parametrize(
    ("address", "klass"),
    [
        ("10.0.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
        ("168.63.129.16", "cloud host agent"),
    ],
)
def test_concealing_policy_names_the_class_but_not_the_address(address: str, klass: str) -> None:
    with pytest.raises(BlockedAddress) as info:
        check_address(ip(address), conceal())
    detail = info.value.detail
    assert klass in detail
    for spelled in {address, str(ip(address)), *(str(a) for a in embedded_ipv4(ip(address)))}:
        assert spelled not in detail
    assert "not in the allowlist" in detail


def test_concealing_policy_names_the_host_but_not_what_it_resolved_to(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver(["93.184.216.34", "10.20.30.40"]))
    with pytest.raises(BlockedAddress) as info:
        resolve_and_check("intranet.example", 80, conceal())
    assert "intranet.example" in info.value.detail
    assert "private" in info.value.detail
    assert "10.20.30.40" not in info.value.detail
    assert "93.184.216.34" not in info.value.detail
    # the default (dev/test) policy still names the address, for debugging
    with pytest.raises(BlockedAddress, match="10.20.30.40"):
        resolve_and_check("intranet.example", 80, NONE)


def test_concealing_policy_still_admits_the_allowlist() -> None:
    policy = NetworkPolicy.from_strings(["10.0.0.0/8"], conceal_internal=True)
    assert policy.conceal_internal
    check_address(ip("10.1.2.3"), policy)
    check_address(ip("93.184.216.34"), policy)
