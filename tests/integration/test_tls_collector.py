"""The tls collector against local TLS servers with trustme certificates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collectors.base import BlockedAddress, CollectContext, NetworkPolicy, TargetConnectError
from collectors.tls import TlsCollector
from tests.conftest import free_port
from tests.tlsserver import certificates, tls_server

pytestmark = pytest.mark.collectors
LOOPBACK = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8"]))
CA, CERTS = certificates()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    with (
        tls_server(CERTS["valid"]) as valid,
        tls_server(CERTS["expired"]) as expired,
        tls_server(CERTS["not_yet_valid"]) as future,
        tls_server(CERTS["wrong_host"]) as wrong,
        tls_server(CERTS["self_signed"]) as self_signed,
    ):
        yield {"valid": valid.port, "expired": expired.port, "not_yet_valid": future.port,
               "wrong_host": wrong.port, "self_signed": self_signed.port}  # fmt: skip


def _collect(port: int, **opts: object) -> dict:
    options = TlsCollector.options_schema().load({"ca_pem": CA.cert_pem.bytes().decode(), **opts})
    return TlsCollector().collect(f"https://localhost:{port}/", options, LOOPBACK).data


def test_valid_certificate(servers) -> None:
    data = _collect(servers["valid"], min_days_warning=14)
    assert data["verification"] == {
        "verified": True,
        "error": None,
        "error_code": None,
        "hostname_match": True,
    }
    assert data["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert data["cipher"]["bits"] >= 128
    leaf = data["chain"][0]
    assert "localhost" in leaf["sans"]
    assert "127.0.0.1" in leaf["sans"]
    assert leaf["key_type"].startswith("EC")
    assert leaf["signature_algorithm"].startswith("sha256")
    assert data["days_to_expiry"] in (4, 5)
    assert data["expiry_warning"] is True
    assert TlsCollector.result_schema().validate(data) == {}


def test_untrusted_root_is_data(servers) -> None:
    options = TlsCollector.options_schema().load({})
    data = TlsCollector().collect(f"https://localhost:{servers['valid']}/", options, LOOPBACK).data
    assert data["verification"]["verified"] is False
    assert "issuer" in data["verification"]["error"]
    assert data["chain"]


@pytest.mark.parametrize(
    ("name", "message", "hostname_match"),
    [
        ("expired", "expired", True),
        ("not_yet_valid", "not yet valid", True),
        ("wrong_host", "Hostname mismatch", False),
        ("self_signed", "self-signed", False),
    ],
)
def test_bad_certificates_are_results_not_crashes(servers, name, message, hostname_match) -> None:
    data = _collect(servers[name])
    assert data["verification"]["verified"] is False
    assert message in data["verification"]["error"]
    assert data["verification"]["hostname_match"] is hostname_match
    assert data["chain"][0]["sha256"]


def test_expired_certificate_has_negative_days(servers) -> None:
    assert _collect(servers["expired"])["days_to_expiry"] < 0


def test_server_name_override_is_used_for_sni_and_matching(servers) -> None:
    data = _collect(servers["wrong_host"], server_name="other.example")
    assert data["verification"]["verified"] is True
    assert data["server_name"] == "other.example"


def test_closed_port_is_a_connect_error() -> None:
    with pytest.raises(TargetConnectError, match="cannot connect"):
        TlsCollector().collect(
            f"https://127.0.0.1:{free_port()}/", TlsCollector.options_schema().load({}), LOOPBACK
        )


def test_tls_goes_through_the_network_guard(servers) -> None:
    options = TlsCollector.options_schema().load({})
    with pytest.raises(BlockedAddress):
        TlsCollector().collect(
            f"https://127.0.0.1:{servers['valid']}/",
            options,
            CollectContext(policy=NetworkPolicy()),
        )
