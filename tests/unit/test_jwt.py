"""JWT verification: every way a token must be refused, and the key-set checks."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.hashes import SHA256

from app.auth.failures import INVALID_CREDENTIALS, CredentialRejected
from app.auth.jwtauth import JwtVerifier
from app.errors import Unauthorized
from app.jwks import KeySetError, parse_key_set

HS_SECRET = b"0123456789abcdef0123456789abcdef-hs"
ISS, AUD = "https://idp.test", "collectq"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def key_set(rsa_key, ec_key) -> str:
    return json.dumps(
        {
            "keys": [
                {"kid": "hs-1", "alg": "HS256", "k": _b64(HS_SECRET)},
                {"kid": "rs-1", "alg": "RS256", "pem": _pem(rsa_key)},
                {"kid": "es-1", "alg": "ES256", "pem": _pem(ec_key)},
            ]
        }
    )


@pytest.fixture
def verifier(key_set) -> JwtVerifier:
    return JwtVerifier(parse_key_set(key_set), issuer=ISS, audience=AUD, leeway=0)


def _claims(exp_in: int = 300, nbf_in: int = -10, iat_in: int = 0, **over: Any) -> dict[str, Any]:
    """Claims built now (exp/nbf/iat relative to the call), with `over` replacing any."""
    now = int(time.time())
    base = {"sub": "team-a", "iss": ISS, "aud": AUD, "exp": now + exp_in, "nbf": now + nbf_in,
            "iat": now + iat_in}  # fmt: skip
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _token(claims: dict[str, Any], key: Any, alg: str, kid: str) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_valid_tokens_from_each_key_give_subject_and_scopes(verifier, rsa_key, ec_key) -> None:
    for key, alg, kid in ((HS_SECRET, "HS256", "hs-1"), (rsa_key, "RS256", "rs-1"),
                          (ec_key, "ES256", "es-1")):  # fmt: skip
        claims = verifier.verify(_token(_claims(scope="jobs:read jobs:write"), key, alg, kid))
        assert claims.subject == "team-a"
        assert claims.owner == f"jwt:{verifier.issuer_id}:team-a"
        assert claims.scopes == ("jobs:read", "jobs:write")


def test_scopes_claim_may_be_a_list(verifier) -> None:
    token = _token(_claims(scope=["admin"]), HS_SECRET, "HS256", "hs-1")
    assert verifier.verify(token).scopes == ("admin",)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"exp_in": -5}, "expired"),
        ({"nbf_in": 300}, "not yet valid"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"exp": None}, "'exp'"),
        ({"nbf": None}, "'nbf'"),
        ({"iss": None}, "'iss'"),
        ({"aud": None}, "'aud'"),
        ({"sub": None}, "'sub'"),
        ({"iat": None}, "'iat'"),
        ({"iat_in": 300}, "issued in the future"),
        ({"exp_in": 86400 + 60}, "lifetime"),
        ({"iat_in": -86400, "exp_in": 60}, "lifetime"),
        ({"iat": "yesterday"}, "iat"),
    ],
)
def test_bad_claims_are_refused(verifier, over, reason) -> None:
    # Claims are built when the test runs, not at collection (a long run would expire them).
    with pytest.raises(CredentialRejected) as info:
        verifier.verify(_token(_claims(**over), HS_SECRET, "HS256", "hs-1"))
    assert reason in info.value.reason
    assert info.value.detail == INVALID_CREDENTIALS


def test_max_lifetime_is_configurable_and_iat_within_leeway_passes(key_set) -> None:
    keys = parse_key_set(key_set)
    short = JwtVerifier(keys, issuer=ISS, audience=AUD, leeway=30, max_lifetime=600)
    ok = _token(_claims(exp_in=500, iat_in=20), HS_SECRET, "HS256", "hs-1")  # iat in leeway
    assert short.verify(ok).subject == "team-a"
    too_long = _token(_claims(exp_in=700), HS_SECRET, "HS256", "hs-1")
    with pytest.raises(CredentialRejected) as info:
        short.verify(too_long)
    assert "lifetime" in info.value.reason


@pytest.mark.parametrize(
    "sub",
    ["*", "", " ", "a:b", "x|y", "a" * 129, "ünï", "a\x00b", "a\nb", "a b", "a/b", "-a", 7],
    ids=repr,
)
def test_subjects_outside_the_strict_charset_are_refused(verifier, sub) -> None:
    with pytest.raises(CredentialRejected) as info:
        verifier.verify(_token(_claims(sub=sub), HS_SECRET, "HS256", "hs-1"))
    assert "subject" in info.value.reason
    assert info.value.detail == INVALID_CREDENTIALS


@pytest.mark.parametrize("sub", ["alice", "a" * 128, "user@example.org", "00u1ab-C_d.e+f", "42"])
def test_plain_subjects_are_accepted_and_namespaced_by_issuer(key_set, sub) -> None:
    keys = parse_key_set(key_set)
    one = JwtVerifier(keys, issuer=ISS, audience=AUD).verify(
        _token(_claims(sub=sub), HS_SECRET, "HS256", "hs-1")
    )
    other = JwtVerifier(keys, issuer="https://other.test", audience=AUD).verify(
        _token(_claims(sub=sub, iss="https://other.test"), HS_SECRET, "HS256", "hs-1")
    )
    assert one.subject == other.subject == sub
    assert one.owner.startswith("jwt:")
    assert one.owner.endswith(f":{sub}")
    assert one.owner != other.owner


def test_alg_none_is_refused(verifier) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": "hs-1", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(scope="admin")).encode())
    with pytest.raises(CredentialRejected) as info:
        verifier.verify(f"{header}.{payload}.")
    assert "algorithm" in info.value.reason


def test_hs256_signed_with_the_rsa_public_key_is_refused(verifier, rsa_key) -> None:
    """The HS/RS confusion: an attacker HMACs with the (public) RSA key as the secret."""
    header = _b64(json.dumps({"alg": "HS256", "kid": "rs-1", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(scope="admin")).encode())
    mac = crypto_hmac.HMAC(_pem(rsa_key).encode(), SHA256())
    mac.update(f"{header}.{payload}".encode())
    forged = f"{header}.{payload}.{_b64(mac.finalize())}"
    with pytest.raises(CredentialRejected) as info:
        verifier.verify(forged)
    assert "algorithm does not match" in info.value.reason


def test_unknown_kid_and_missing_kid_are_refused(verifier) -> None:
    for headers in ({"kid": "nope"}, {}):
        token = jwt.encode(_claims(), HS_SECRET, algorithm="HS256", headers=headers)
        with pytest.raises(CredentialRejected) as info:
            verifier.verify(token)
        assert "kid" in info.value.reason


def test_wrong_signature_and_garbage_are_refused(verifier) -> None:
    other = b"another-secret-another-secret-another-secret"
    with pytest.raises(Unauthorized):
        verifier.verify(_token(_claims(), other, "HS256", "hs-1"))
    with pytest.raises(Unauthorized):
        verifier.verify("not.a.jwt")


def test_every_refusal_has_one_detail_and_challenge(verifier, rsa_key) -> None:
    """Unknown kid, wrong signature, wrong alg, bad claims: one answer; the reason is for logs."""
    other = b"another-secret-another-secret-another-secret"
    tokens = [
        _token(_claims(), HS_SECRET, "HS256", "nope"),  # unknown kid
        _token(_claims(), other, "HS256", "hs-1"),  # wrong secret
        _token(_claims(), rsa_key, "RS256", "hs-1"),  # wrong algorithm for the kid
        _token(_claims(exp_in=-5), HS_SECRET, "HS256", "hs-1"),  # expired
        _token(_claims(aud="x"), HS_SECRET, "HS256", "hs-1"),  # audience
        "not.a.jwt",
    ]
    answers = set()
    reasons = set()
    for token in tokens:
        with pytest.raises(CredentialRejected) as info:
            verifier.verify(token)
        answers.add((info.value.detail, info.value.headers()["WWW-Authenticate"]))
        reasons.add(info.value.reason)
    assert answers == {(INVALID_CREDENTIALS, CredentialRejected("x").headers()["WWW-Authenticate"])}
    assert len(reasons) == len(tokens)  # the log still tells them apart


def test_rs_token_under_an_hs_kid_is_refused(verifier, rsa_key) -> None:
    with pytest.raises(Unauthorized):
        verifier.verify(_token(_claims(), rsa_key, "RS256", "hs-1"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kid": "a", "alg": "HS256", "k": _b64(b"short")}, "at least 32 bytes"),
        ({"kid": "a", "alg": "none", "k": _b64(HS_SECRET)}, "alg must be one of"),
        ({"kid": "a", "alg": "HS384", "k": _b64(HS_SECRET)}, "alg must be one of"),
        ({"alg": "HS256", "k": _b64(HS_SECRET)}, "kid is required"),
        ({"kid": "a", "alg": "RS256", "pem": "-----BEGIN nonsense"}, "not a public key"),
        ({"kid": "a", "alg": "HS256", "pem": "x"}, "not a PEM"),
        ({"kid": "a", "alg": "RS256", "kty": "oct", "k": _b64(HS_SECRET)}, "kty must be RSA"),
    ],
)
def test_bad_key_sets_are_refused_without_echoing_the_key(entry, message) -> None:
    with pytest.raises(KeySetError) as info:
        parse_key_set(json.dumps({"keys": [entry]}))
    assert message in str(info.value)
    assert HS_SECRET.decode() not in str(info.value)


def test_duplicate_kids_and_non_json_are_refused() -> None:
    entry = {"kid": "a", "alg": "HS256", "k": _b64(HS_SECRET)}
    with pytest.raises(KeySetError, match="duplicate"):
        parse_key_set(json.dumps({"keys": [entry, entry]}))
    with pytest.raises(KeySetError, match="not JSON"):
        parse_key_set("{nope")


def test_es256_needs_p256(ec_key) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeySetError, match="P-256"):
        parse_key_set(json.dumps({"keys": [{"kid": "e", "alg": "ES256", "pem": _pem(p384)}]}))
