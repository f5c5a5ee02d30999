"""The secret-file watcher (`app.secretfiles`): contents compared, a Kubernetes-style symlink
swap seen, a configuration that no longer loads kept out (and reported without its value)."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from app.secretfiles import SecretWatcher, approve_reload, fingerprint, watched_files

JWT_VAR = "COLLECTQ_JWT_KEYS_FILE"


def _key_set(kid: str, secret: bytes) -> str:
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kid": kid, "alg": "HS256", "k": k}]})


@pytest.fixture
def jwt_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A JWT key set given as a file, as the only secret file of the environment."""
    path = tmp_path / "jwt_keys"
    path.write_text(_key_set("k1", b"a" * 32))
    monkeypatch.setenv("COLLECTQ_ENV", "test")
    monkeypatch.setenv(JWT_VAR, str(path))
    monkeypatch.setenv("COLLECTQ_JWT_ISSUER", "https://idp.test")
    monkeypatch.setenv("COLLECTQ_JWT_AUDIENCE", "collectq")
    return path


def test_only_set_collectq_file_variables_are_watched() -> None:
    env = {
        "COLLECTQ_REDIS_URL_FILE": "/run/secrets/redis_url",
        "COLLECTQ_SENTRY_DSN_FILE": "",  # unset in effect
        "COLLECTQ_REDIS_URL": "redis://x",
        "OTHER_FILE": "/etc/passwd",
    }
    assert watched_files(env) == {"COLLECTQ_REDIS_URL_FILE": "/run/secrets/redis_url"}


def test_a_rewritten_file_is_a_change_and_the_same_contents_are_not(jwt_file: Path) -> None:
    watcher = SecretWatcher()
    assert watcher.changes()[0] == []
    jwt_file.write_text(jwt_file.read_text())  # touched, same contents
    assert watcher.poll() == []
    jwt_file.write_text(_key_set("k2", b"b" * 32))
    assert watcher.poll() == [JWT_VAR]


def test_an_unreadable_file_is_a_change(jwt_file: Path) -> None:
    watcher = SecretWatcher()
    jwt_file.unlink()
    assert watcher.poll() == [JWT_VAR]
    assert fingerprint({JWT_VAR: str(jwt_file)}) == {JWT_VAR: ""}


def test_a_kubernetes_symlink_swap_is_seen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A mounted secret: `name -> ..data/name`, `..data -> ..<timestamp>`; an update writes
    a new timestamped directory and renames a new `..data` link over the old one."""
    mount = tmp_path / "secrets"
    (mount / "..2026_11_30_a").mkdir(parents=True)
    (mount / "..2026_11_30_a" / "redis_url").write_text("redis://cq_a:pw-a@127.0.0.1:6379/0")
    (mount / "..data").symlink_to("..2026_11_30_a")
    (mount / "redis_url").symlink_to("..data/redis_url")
    before = os.stat(mount / "redis_url", follow_symlinks=False)
    monkeypatch.setenv("COLLECTQ_REDIS_URL_FILE", str(mount / "redis_url"))
    watcher = SecretWatcher()

    (mount / "..2026_11_30_b").mkdir()
    (mount / "..2026_11_30_b" / "redis_url").write_text("redis://cq_b:pw-b@127.0.0.1:6379/0")
    (mount / "..data_tmp").symlink_to("..2026_11_30_b")
    os.replace(mount / "..data_tmp", mount / "..data")

    after = os.stat(mount / "redis_url", follow_symlinks=False)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # the link
    assert watcher.poll() == ["COLLECTQ_REDIS_URL_FILE"]


def test_the_thread_notifies_a_change(jwt_file: Path) -> None:
    watcher = SecretWatcher()
    seen: list[list[str]] = []
    notified = threading.Event()

    def notify(names: list[str]) -> None:
        seen.append(names)
        notified.set()

    watcher.start(0.02, notify)
    try:
        jwt_file.write_text(_key_set("k2", b"b" * 32))
        assert notified.wait(5)
    finally:
        watcher.stop()
    assert seen[0] == [JWT_VAR]


def test_interval_zero_starts_no_thread(jwt_file: Path) -> None:
    watcher = SecretWatcher()
    watcher.start(0, lambda _: None)
    assert watcher._thread is None


def test_a_broken_file_is_kept_out_and_named_without_its_value(
    jwt_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = SecretWatcher()
    jwt_file.write_text('{"keys": [{"kid": "k9", "alg": "HS256", "k": "c2hvcnQtc2VjcmV0"}]}')
    with caplog.at_level(logging.INFO, logger="collectq.secrets"):
        assert approve_reload(watcher, "API") is None
    assert "COLLECTQ_JWT_KEYS" in caplog.text
    assert "not reloading" in caplog.text
    assert "c2hvcnQtc2VjcmV0" not in caplog.text
    assert watcher.poll() == []  # reported once, not at every poll

    jwt_file.write_text(_key_set("k2", b"b" * 32))  # fixed
    assert watcher.poll() == [JWT_VAR]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="collectq.secrets"):
        settings = approve_reload(watcher, "API")
    assert settings is not None
    assert settings.jwt_keys == _key_set("k2", b"b" * 32)
    assert f"reloading settings (changed: {JWT_VAR})" in caplog.text
    assert watcher.poll() == []


def test_a_reload_without_a_change_says_so(
    jwt_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = SecretWatcher()
    with caplog.at_level(logging.INFO, logger="collectq.secrets"):
        assert approve_reload(watcher, "worker") is not None
    assert "worker: reloading settings (changed: no secret file)" in caplog.text
