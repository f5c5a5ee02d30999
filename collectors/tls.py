"""The tls collector: handshake facts, the presented chain, and verification as data.

An expired, self-signed, wrongly named or untrusted certificate is a *result*
(`verification.verified: false` with the reason), not a failure. The socket is
opened by the network guard like every other outbound connection.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from collectors import fingerprint as fp
from collectors import netguard
from collectors.base import (
    CollectContext,
    Collector,
    InvalidTarget,
    Result,
    TargetConnectError,
    TargetTimeout,
)
from schemas.tls import TlsOptionsSchema, TlsResultSchema

__all__ = ["TlsCollector", "hostname_matches"]

_ENCODING_DER = 2  # _ssl.ENCODING_DER: the chain API is private before Python 3.13


def _host_port(target: str, port: int | None) -> tuple[str, int]:
    if "://" in target:
        parts = netguard.check_url(target)  # refuses a URL without a host
        return parts.hostname or "", port or parts.port or 443
    host = target.strip("[]")
    if not host:
        raise InvalidTarget("empty target")
    return host, port or 443


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def hostname_matches(cert: x509.Certificate, name: str) -> bool:
    """RFC 6125 matching of `name` against the SANs (one left-most wildcard label)."""
    sans = _san(cert)
    if sans is None:
        return False
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in sans.get_values_for_type(x509.IPAddress)
    name = name.rstrip(".").lower()
    for pattern in sans.get_values_for_type(x509.DNSName):
        pattern = pattern.lower()
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            head, rest = name.split(".", 1)
            if head and rest == pattern[2:]:
                return True
    return False


def _key(cert: x509.Certificate) -> tuple[str, int | None]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, None


def _describe(der: bytes, now: datetime) -> dict[str, Any]:
    cert = x509.load_der_x509_certificate(der)
    san = _san(cert)
    sans = [str(v) for v in san.get_values_for_type(x509.DNSName)] if san else []
    sans += [str(v) for v in san.get_values_for_type(x509.IPAddress)] if san else []
    key_type, key_size = _key(cert)
    sig = cert.signature_hash_algorithm
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_to_expiry": (cert.not_valid_after_utc - now).days,
        "key_type": key_type,
        "key_size": key_size,
        "signature_algorithm": f"{sig.name}-{key_type.split()[0]}" if sig else None,
        "sha256": hashlib.sha256(der).hexdigest(),
    }


MAX_CONTEXTS = 32


class TlsCollector(Collector):
    name = "tls"
    options_schema = TlsOptionsSchema
    result_schema = TlsResultSchema

    def __init__(self) -> None:
        self._contexts: OrderedDict[str | None, ssl.SSLContext] = OrderedDict()
        self._lock = threading.Lock()
        self._unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._unverified.check_hostname = False
        self._unverified.verify_mode = ssl.CERT_NONE

    def fingerprint(
        self, data: Mapping[str, Any], options: fp.FingerprintOptions, artifact: fp.ArtifactReader
    ) -> fp.Fingerprint:
        """The leaf certificate (sha256 of its DER), its expiry and whether it verifies;
        not the days to expiry (they count down)."""
        chain = data.get("chain") or [{}]
        verification = data.get("verification") or {}
        return fp.Fingerprint(
            "tls/1",
            {
                "leaf_sha256": chain[0].get("sha256"),
                "not_after": chain[0].get("not_after"),
                "verified": verification.get("verified"),
            },
        )

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        host, port = _host_port(target, options["port"])
        server_name = options["server_name"] or host
        timeout = options["timeout"]
        verified = self._context(options["ca_pem"])
        verification: dict[str, Any] = {"verified": True, "error": None, "error_code": None}
        try:
            tls = self._handshake(host, port, server_name, verified, ctx, timeout)
        except ssl.SSLCertVerificationError as exc:
            verification = {
                "verified": False,
                "error": exc.verify_message,
                "error_code": exc.verify_code,
            }
            tls = self._handshake(host, port, server_name, self._unverified, ctx, timeout)
        with tls:
            now = datetime.now(UTC)
            chain_der = self._chain(tls)
            cipher = tls.cipher()
            protocol = tls.version()
        chain = [_describe(der, now) for der in chain_der]
        leaf = x509.load_der_x509_certificate(chain_der[0]) if chain_der else None
        verification["hostname_match"] = bool(leaf and hostname_matches(leaf, server_name))
        days = chain[0]["days_to_expiry"] if chain else None
        return Result(
            data={
                "host": host,
                "port": port,
                "server_name": server_name,
                "protocol": protocol,
                "cipher": {"name": cipher[0], "protocol": cipher[1], "bits": cipher[2]}
                if cipher
                else None,
                "chain": chain,
                "verification": verification,
                "days_to_expiry": days,
                "expiry_warning": days is not None and days < options["min_days_warning"],
            }
        )

    def _context(self, ca_pem: str | None) -> ssl.SSLContext:
        """A verifying context (system store, plus `ca_pem`), reused across jobs.

        Loading the system trust store costs ~20 ms, more than a local handshake;
        contexts are thread-safe, so one per distinct `ca_pem` is kept (LRU).
        """
        with self._lock:
            context = self._contexts.get(ca_pem)
            if context is not None:
                self._contexts.move_to_end(ca_pem)
                return context
        context = ssl.create_default_context()
        if ca_pem:
            try:
                context.load_verify_locations(cadata=ca_pem)
            except ssl.SSLError as exc:
                raise InvalidTarget(f"ca_pem is not valid PEM: {exc}") from exc
        with self._lock:
            self._contexts[ca_pem] = context
            while len(self._contexts) > MAX_CONTEXTS:
                self._contexts.popitem(last=False)
        return context

    @staticmethod
    def _handshake(
        host: str,
        port: int,
        server_name: str,
        context: ssl.SSLContext,
        ctx: CollectContext,
        timeout: float,
    ) -> ssl.SSLSocket:
        sock = netguard.guarded_connection(host, port, ctx.policy, timeout)
        try:
            return context.wrap_socket(sock, server_hostname=server_name)
        except ssl.SSLCertVerificationError:
            sock.close()
            raise
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            if isinstance(exc, TimeoutError | socket.timeout):
                raise TargetTimeout(f"TLS handshake with {host}:{port} timed out") from exc
            raise TargetConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from exc

    @staticmethod
    def _chain(tls: ssl.SSLSocket) -> list[bytes]:
        """The chain as presented by the server (leaf first), DER-encoded."""
        sslobj = getattr(tls, "_sslobj", None)
        get_chain = getattr(sslobj, "get_unverified_chain", None)  # public in 3.13
        if get_chain is not None:
            return [c.public_bytes(_ENCODING_DER) for c in get_chain() or []]
        leaf = tls.getpeercert(binary_form=True)
        return [leaf] if leaf else []
