"""The network guard's decisions. Pure: nothing here opens a connection.

Non-loopback addresses are only ever *judged* here, never connected to.
"""

from __future__ import annotations

import ipaddress

import pytest

from collectors.base import BlockedAddress, InvalidTarget, NetworkPolicy
from collectors.netguard import check_address, check_url, resolve_and_check

NONE = NetworkPolicy()
LOOPBACK = NetworkPolicy.from_strings(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private|reserved"),
        ("255.255.255.255", "private|reserved"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),
        ("::a9fe:a9fe", "link-local"),  # IPv4-compatible
        ("::7f00:1", "loopback"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
    ],
)
def test_non_global_addresses_are_blocked(address: str, reason: str) -> None:
    with pytest.raises(BlockedAddress, match=reason):
        check_address(ipaddress.ip_address(address), NONE)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "::ffff:93.184.216.34"]
)
def test_global_addresses_pass(address: str) -> None:
    check_address(ipaddress.ip_address(address), NONE)


def test_allowlist_admits_its_networks_in_every_spelling() -> None:
    for address in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"):
        check_address(ipaddress.ip_address(address), LOOPBACK)
    for address in ("169.254.169.254", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1"):
        with pytest.raises(BlockedAddress):
            check_address(ipaddress.ip_address(address), LOOPBACK)


def test_blocked_detail_names_the_address() -> None:
    with pytest.raises(BlockedAddress) as info:
        check_address(ipaddress.ip_address("::ffff:169.254.169.254"), NONE)
    assert "169.254.169.254" in info.value.detail
    assert info.value.to_dict() == {
        "type": "blocked_address",
        "detail": info.value.detail,
        "retryable": False,
    }


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/",
        "file:///etc/passwd",
        "gopher://x/",
        "https://user:pw@example.org/",
        "http:///x",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidTarget):
        check_url(url)


# getaddrinfo turns these numeric spellings into 127.0.0.1 locally (no packet is sent);
# "localhost" comes from /etc/hosts.
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost"]
)
def test_loopback_spellings_resolve_and_are_blocked(host: str) -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        resolve_and_check(host, 80, NONE)


def test_loopback_spellings_pass_when_allowlisted() -> None:
    assert resolve_and_check("2130706433", 80, LOOPBACK)[0][1][0] == "127.0.0.1"
