"""The SSRF probe lists shared by the loopback probes and the network-namespace probes."""

from __future__ import annotations

import ipaddress
from typing import Any

from collectors.base import Collector
from collectors.dns import DnsCollector
from collectors.http import HttpCollector
from collectors.screenshot import ScreenshotCollector
from collectors.tls import TlsCollector

__all__ = ["LOOPBACK_HOSTS", "NON_LOOPBACK_HOSTS", "probe_cases"]

# Spellings of loopback: each must be refused when loopback is not allowlisted.
LOOPBACK_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "localhost",  # a name that resolves to 127.0.0.1
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::127.0.0.1]",  # IPv4-compatible
]

# Internal, non-loopback addresses: probed only on the decision function or inside a
# network namespace that has nothing but loopback.
NON_LOOPBACK_HOSTS = [
    "169.254.169.254",  # cloud metadata
    "2852039166",  # 169.254.169.254, decimal
    "0xa9fea9fe",  # 169.254.169.254, hex
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "0.0.0.0",
    "[fd00::1]",  # unique local
    "[fe80::1]",  # link-local
    "[::ffff:169.254.169.254]",  # IPv4-mapped
    "[::ffff:10.0.0.1]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[64:ff9b:1::a00:1]",  # local-use NAT64
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[::a9fe:a9fe]",  # IPv4-compatible
    "[2001:0:4136:e378:8000:63bf:5601:5601]",  # Teredo, client 169.254.169.254 (obfuscated)
]

COLLECTORS: dict[str, type[Collector]] = {
    "http": HttpCollector,
    "dns": DnsCollector,
    "tls": TlsCollector,
    "screenshot": ScreenshotCollector,
}


def probe_cases(hosts: list[str], port: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(collector, target, raw options) for each host; dns probes its nameserver."""
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for host in hosts:
        cases += [
            ("http", f"http://{host}:{port}/", {}),
            ("tls", f"https://{host}:{port}/", {}),
            ("screenshot", f"http://{host}:{port}/", {"timeout": 5}),
        ]
        literal = host.strip("[]")
        try:
            ipaddress.ip_address(literal)  # the nameserver option takes IP literals only
        except ValueError:
            continue
        cases.append(("dns", "example.org", {"nameserver": literal, "port": port, "timeout": 1}))
    return cases
