"""The dns collector: chosen record types with TTLs, flags and the resolver used.

NXDOMAIN and NODATA are answers (data), not failures. A nameserver given in
the options is an outbound address like any other: the network guard decides.
Without one, the resolver the deployment configured (``COLLECTQ_DNS_RESOLVER``)
or the system's (resolv.conf) is asked: operator configuration, trusted.

Under a concealing policy (staging/prod) the collector is no oracle of the
internal network: A/AAAA records whose address is neither global nor inside
``NET_ALLOW`` are withheld; the answer keeps only their class (``withheld``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from collectors import fingerprint as fp
from collectors import netguard
from collectors.base import (
    CollectContext,
    Collector,
    InvalidTarget,
    NetworkPolicy,
    Result,
    TargetConnectError,
    TargetTimeout,
)
from schemas.dns import DnsOptionsSchema, DnsResultSchema

__all__ = ["DnsCollector"]


def _hostname(target: str) -> str:
    host = urlsplit(target).hostname if "://" in target else target.strip("[]")
    if not host:
        raise InvalidTarget(f"no host name in {target!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host if host.endswith(".") else host + "."
    raise InvalidTarget(f"{host} is an IP address; the dns collector needs a name")


def _withhold_internal(answer: dict[str, Any], policy: NetworkPolicy) -> dict[str, Any]:
    """`answer` without the address records `policy` conceals (their classes in `withheld`)."""
    if not policy.conceal_internal:
        return answer
    kept, withheld = [], []
    for record in answer["records"]:
        try:
            address = ipaddress.ip_address(record["value"])
        except ValueError:  # a name (CNAME, MX, ...), not an address
            kept.append(record)
            continue
        klass = netguard.address_class(address, policy)
        if klass is None:
            kept.append(record)
        else:
            withheld.append(klass)
    return {**answer, "records": kept, "withheld": withheld}


class DnsCollector(Collector):
    name = "dns"
    options_schema = DnsOptionsSchema
    result_schema = DnsResultSchema

    def __init__(self, *, resolver: str | None = None) -> None:
        if resolver:
            ipaddress.ip_address(resolver)  # the settings checked it; refuse a bad one here too
        self.resolver = resolver or None

    def fingerprint(
        self, data: Mapping[str, Any], options: fp.FingerprintOptions, artifact: fp.ArtifactReader
    ) -> fp.Fingerprint:
        """Per record type the sorted values (no TTLs: they count down); names compare
        case-insensitively, TXT and CAA as they are; a non-NOERROR rcode is a value too."""
        parts: dict[str, Any] = {"nxdomain": bool(data.get("nxdomain"))}
        for rdtype, answer in sorted((data.get("answers") or {}).items()):
            keep_case = rdtype in ("TXT", "CAA")
            values = sorted(
                r["value"] if keep_case else r["value"].lower() for r in answer.get("records", [])
            )
            values += sorted(f"withheld {k}" for k in answer.get("withheld") or ())
            if answer.get("rcode", "NOERROR") != "NOERROR":
                values.insert(0, f"rcode {answer['rcode']}")
            parts[rdtype] = values
        return fp.Fingerprint("dns/1", parts)

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        name = _hostname(target)
        server = options["nameserver"]
        if server is not None:
            netguard.check_address(ipaddress.ip_address(server), ctx.policy)
        elif self.resolver is not None:  # the operator's resolver is trusted configuration
            server = self.resolver
        else:  # so is the system's (resolv.conf)
            server = dns.resolver.Resolver().nameservers[0]
        port = options["port"]
        answers: dict[str, Any] = {}
        for rdtype in options["types"]:
            answer = self._ask(name, rdtype, str(server), port, options)
            answers[rdtype] = _withhold_internal(answer, ctx.policy)
        nxdomain = any(a["rcode"] == "NXDOMAIN" for a in answers.values())
        resolver = f"[{server}]:{port}" if ":" in str(server) else f"{server}:{port}"
        if options["nameserver"] is None and ctx.policy.conceal_internal:
            resolver = "default"  # the deployment's resolver is an internal address too
        return Result(
            data={"name": name, "resolver": resolver, "nxdomain": nxdomain, "answers": answers}
        )

    @staticmethod
    def _ask(
        name: str, rdtype: str, server: str, port: int, options: dict[str, Any]
    ) -> dict[str, Any]:
        query = dns.message.make_query(name, rdtype, want_dnssec=False)
        query.flags |= dns.flags.AD  # ask the resolver to report DNSSEC validation
        try:
            if options["tcp_fallback"]:
                response, used_tcp = dns.query.udp_with_fallback(
                    query, server, timeout=options["timeout"], port=port
                )
            else:
                response, used_tcp = (
                    dns.query.udp(query, server, timeout=options["timeout"], port=port),
                    False,
                )
        except dns.exception.Timeout as exc:
            raise TargetTimeout(
                f"{server}:{port} did not answer {rdtype} {name} in {options['timeout']}s"
            ) from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise TargetConnectError(
                f"asking {server}:{port} for {rdtype} {name} failed: {exc}"
            ) from exc
        wanted = dns.rdatatype.from_text(rdtype)
        records = [
            {"value": rdata.to_text(), "ttl": rrset.ttl}
            for rrset in response.answer
            if rrset.rdtype == wanted
            for rdata in rrset
        ]
        return {
            "rcode": dns.rcode.to_text(response.rcode()),
            "records": records,
            "withheld": [],
            "authoritative": bool(response.flags & dns.flags.AA),
            "authenticated": bool(response.flags & dns.flags.AD),
            "truncated_udp": used_tcp,
            "transport": "tcp" if used_tcp else "udp",
        }
