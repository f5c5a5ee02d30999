"""A local DNS server (dnslib) with fixed records, for the dns collector's tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer
from dnslib.zoneresolver import ZoneResolver

ZONE = """
example.test.      300  IN A     192.0.2.10
example.test.      300  IN AAAA  2001:db8::10
example.test.      600  IN MX    10 mail.example.test.
example.test.      60   IN TXT   "v=spf1 -all"
example.test.      3600 IN NS    ns1.example.test.
example.test.      3600 IN SOA   ns1.example.test. admin.example.test. 1 7200 3600 1209600 300
example.test.      3600 IN CAA   0 issue "letsencrypt.org"
www.example.test.  120  IN CNAME example.test.
"""


class TestResolver(BaseResolver):  # type: ignore[misc]  # dnslib ships no type hints
    """The zone above, NXDOMAIN for unknown names, and a name that answers slowly."""

    def __init__(self) -> None:
        self.zone = ZoneResolver(ZONE)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = str(request.q.qname)
        if qname.startswith("slow."):
            time.sleep(2)
        reply = self.zone.resolve(request, handler)
        known = any(str(rr.rname) == qname for rr in RR.fromZone(ZONE))
        # ZoneResolver says NXDOMAIN for any empty answer; a known name is NODATA.
        reply.header.rcode = RCODE.NOERROR if known else RCODE.NXDOMAIN
        reply.header.aa = 1
        return reply


@contextmanager
def dns_server(port: int) -> Iterator[DNSServer]:
    server = DNSServer(TestResolver(), port=port, address="127.0.0.1", logger=_Quiet())
    server.start_thread()
    try:
        yield server
    finally:
        server.stop()
        server.server.server_close()


class _Quiet:
    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: None


__all__ = ["QTYPE", "dns_server"]
