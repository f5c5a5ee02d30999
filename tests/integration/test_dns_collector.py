"""The dns collector against a local DNS server (dnslib on loopback)."""

from __future__ import annotations

import pytest

from collectors.base import BlockedAddress, CollectContext, NetworkPolicy, TargetTimeout
from collectors.dns import DnsCollector

pytestmark = pytest.mark.collectors
LOOPBACK = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8"]))


def _opts(port: int, **kw: object) -> dict:
    return DnsCollector.options_schema().load({"nameserver": "127.0.0.1", "port": port, **kw})


def test_default_types_are_a_and_aaaa_with_ttls(dns_port: int) -> None:
    data = DnsCollector().collect("example.test", _opts(dns_port), LOOPBACK).data
    assert data["name"] == "example.test."
    assert data["resolver"] == f"127.0.0.1:{dns_port}"
    assert data["answers"]["A"]["records"] == [{"value": "192.0.2.10", "ttl": 300}]
    assert data["answers"]["AAAA"]["records"] == [{"value": "2001:db8::10", "ttl": 300}]
    assert data["answers"]["A"]["authoritative"] is True
    assert data["nxdomain"] is False
    assert DnsCollector.result_schema().validate(data) == {}


def test_every_record_type(dns_port: int) -> None:
    types = ["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "CAA"]
    answers = (
        DnsCollector()
        .collect("https://example.test/x", _opts(dns_port, types=types), LOOPBACK)
        .data["answers"]
    )
    assert answers["MX"]["records"] == [{"value": "10 mail.example.test.", "ttl": 600}]
    assert answers["TXT"]["records"][0]["value"] == '"v=spf1 -all"'
    assert answers["NS"]["records"][0]["value"] == "ns1.example.test."
    assert answers["SOA"]["records"][0]["value"].startswith(
        "ns1.example.test. admin.example.test. 1"
    )
    assert answers["CAA"]["records"][0]["value"] == '0 issue "letsencrypt.org"'
    assert answers["CNAME"]["records"] == []  # the apex has no CNAME: NODATA
    assert answers["CNAME"]["rcode"] == "NOERROR"


def test_cname(dns_port: int) -> None:
    data = (
        DnsCollector().collect("www.example.test", _opts(dns_port, types=["CNAME"]), LOOPBACK).data
    )
    assert data["answers"]["CNAME"]["records"] == [{"value": "example.test.", "ttl": 120}]


def test_nxdomain_is_data(dns_port: int) -> None:
    data = DnsCollector().collect("nope.example.test", _opts(dns_port), LOOPBACK).data
    assert data["nxdomain"] is True
    assert data["answers"]["A"]["rcode"] == "NXDOMAIN"


def test_slow_answer_times_out(dns_port: int) -> None:
    with pytest.raises(TargetTimeout):
        DnsCollector().collect(
            "slow.example.test", _opts(dns_port, timeout=0.3, types=["A"]), LOOPBACK
        )


def test_nameserver_goes_through_the_network_guard(dns_port: int) -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        DnsCollector().collect(
            "example.test", _opts(dns_port), CollectContext(policy=NetworkPolicy())
        )


def test_unknown_type_and_non_ip_nameserver_are_refused() -> None:
    errors = DnsCollector.options_schema().validate({"types": ["PTRX"], "nameserver": "dns.google"})
    assert set(errors) == {"types", "nameserver"}


# --- issue 11: the dns collector is no internal-network oracle in hardened profiles ---


def concealing() -> CollectContext:
    """The staging/prod context: answers that are not global addresses are withheld."""
    return CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8"], conceal_internal=True))


def test_answers_that_are_not_global_are_withheld_when_concealing(dns_port: int) -> None:
    types = ["A", "AAAA", "MX"]
    data = DnsCollector().collect("example.test", _opts(dns_port, types=types), concealing()).data
    # example.test's A and AAAA are documentation addresses: not global, not allowed
    assert data["answers"]["A"]["records"] == []
    assert data["answers"]["A"]["withheld"] == ["reserved (documentation)"]
    assert data["answers"]["AAAA"]["records"] == []
    assert data["answers"]["AAAA"]["withheld"] == ["reserved (documentation)"]
    assert "192.0.2.10" not in str(data)
    assert "2001:db8::10" not in str(data)
    # names are not addresses: kept
    assert data["answers"]["MX"]["records"] == [{"value": "10 mail.example.test.", "ttl": 600}]
    assert data["answers"]["MX"]["withheld"] == []
    assert DnsCollector.result_schema().validate(data) == {}


def test_net_allow_covering_the_answer_shows_it_when_concealing(dns_port: int) -> None:
    policy = NetworkPolicy.from_strings(
        ["127.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"], conceal_internal=True
    )
    data = DnsCollector().collect("example.test", _opts(dns_port), CollectContext(policy)).data
    assert data["answers"]["A"]["records"] == [{"value": "192.0.2.10", "ttl": 300}]
    assert data["answers"]["AAAA"]["records"] == [{"value": "2001:db8::10", "ttl": 300}]
    assert data["answers"]["A"]["withheld"] == []


def test_dev_and_test_profiles_show_every_answer(dns_port: int) -> None:
    data = DnsCollector().collect("example.test", _opts(dns_port), LOOPBACK).data
    assert data["answers"]["A"]["records"] == [{"value": "192.0.2.10", "ttl": 300}]
    assert data["answers"]["A"]["withheld"] == []


def test_the_configured_resolver_is_asked_when_the_job_names_none(dns_port: int) -> None:
    options = DnsCollector.options_schema().load({"port": dns_port, "types": ["A"]})
    data = DnsCollector(resolver="127.0.0.1").collect("example.test", options, LOOPBACK).data
    assert data["resolver"] == f"127.0.0.1:{dns_port}"
    assert data["answers"]["A"]["records"] == [{"value": "192.0.2.10", "ttl": 300}]


def test_the_resolver_is_a_setting(monkeypatch) -> None:
    from app.runtime import load_collectors
    from app.settings import load_settings

    monkeypatch.setenv("COLLECTQ_DNS_RESOLVER", "127.0.0.53")
    registry = load_collectors(load_settings())
    dns = registry.get("dns")
    assert isinstance(dns, DnsCollector)
    assert dns.resolver == "127.0.0.53"
    registry.close()


@pytest.mark.parametrize(
    ("profile", "conceal"), [("dev", False), ("test", False), ("staging", True), ("prod", True)]
)
def test_hardened_profiles_build_a_concealing_policy(
    monkeypatch, profile: str, conceal: bool
) -> None:
    from app.runtime import build_runtime
    from app.settings import load_settings

    env = {
        "COLLECTQ_ENV": profile,
        "COLLECTQ_REDIS_URL": "redis://:a-long-redis-password@127.0.0.1:6379/0",
        "COLLECTQ_BROKER_URL": "amqp://collectq:a-long-broker-password@127.0.0.1:5672/collectq",
        "COLLECTQ_SECRET_KEY": "k" * 40,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rt = build_runtime(load_settings())  # connects to nothing until used
    assert rt.policy.conceal_internal is conceal
    rt.registry.close()


def test_the_deployments_resolver_address_is_not_shown_when_concealing(dns_port: int) -> None:
    """The deployment's resolver is usually internal (127.0.0.11, 10.96.0.10): not shown to
    tenants in staging/prod. A nameserver the job named itself is shown as given."""
    options = DnsCollector.options_schema().load({"port": dns_port, "types": ["MX"]})
    data = DnsCollector(resolver="127.0.0.1").collect("example.test", options, concealing()).data
    assert data["resolver"] == "default"
    assert data["answers"]["MX"]["records"] == [{"value": "10 mail.example.test.", "ttl": 600}]
    named = DnsCollector().collect("example.test", _opts(dns_port, types=["MX"]), concealing())
    assert named.data["resolver"] == f"127.0.0.1:{dns_port}"
