"""Secrets read from ``COLLECTQ_<NAME>_FILE`` lose the newline an editor or `echo` leaves.

A Docker/Kubernetes secret file usually ends in "\\n" (sometimes "\\r\\n"); no secret means
it, and a kept newline breaks a password, a DSN or a Flask secret key in ways that are hard
to see. Every declared secret is covered, so a new one cannot miss the rule.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from app.options import declared
from app.settings import load_settings

_HS_KEY = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
# One valid value per secret setting (field name → value).
SAMPLES = {
    "jwt_keys": json.dumps({"keys": [{"kid": "k1", "alg": "HS256", "k": _HS_KEY}]}),
    "secret_key": "a-long-secret-key-for-flask-0123",
    "sentry_dsn": "https://public@sentry.example.invalid/1",
    "flower_basic_auth": "ops:a-long-flower-password",
}
ENDINGS = ["\n", "\r\n", "\n\n", " \t\n"]


def test_every_secret_has_a_sample() -> None:
    secrets = {s.name for s in declared() if s.option.secret}
    assert secrets == set(SAMPLES), "add a sample value for each new secret setting"


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_secret_file_loses_its_trailing_newline(
    name: str, ending: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    var = next(s.var for s in declared() if s.name == name)
    path = tmp_path / name
    path.write_bytes((SAMPLES[name] + ending).encode())
    monkeypatch.setenv(var + "_FILE", str(path))
    if name == "jwt_keys":
        monkeypatch.setenv("COLLECTQ_JWT_ISSUER", "https://idp.example.invalid")
        monkeypatch.setenv("COLLECTQ_JWT_AUDIENCE", "collectq")
    assert getattr(load_settings(), name) == SAMPLES[name]


def test_a_url_with_a_password_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "redis_url"
    path.write_text("redis://:s3cret-pass@127.0.0.1:6379/0\n")
    monkeypatch.setenv("COLLECTQ_REDIS_URL_FILE", str(path))
    assert load_settings().redis_url == "redis://:s3cret-pass@127.0.0.1:6379/0"


def test_only_the_ends_are_trimmed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("two words  inside-a-long-key\n")
    monkeypatch.setenv("COLLECTQ_SECRET_KEY_FILE", str(path))
    assert load_settings().secret_key == "two words  inside-a-long-key"
