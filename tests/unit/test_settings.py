from __future__ import annotations

import pytest

from app.settings import ConfigError, load_settings, redact_url


def test_dev_defaults_allow_loopback_only() -> None:
    s = load_settings()
    assert s.env == "dev"
    assert s.net_allow == ("127.0.0.0/8", "::1/128")


def test_test_and_prod_profiles_allow_no_internal_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_ENV", "test")
    assert load_settings().net_allow == ()


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_API_PORT", "99999")
    monkeypatch.setenv("COLLECTQ_MAX_RETRIES", "many")
    monkeypatch.setenv("COLLECTQ_BROKER_URL", "http://nope")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {
        "COLLECTQ_API_PORT",
        "COLLECTQ_MAX_RETRIES",
        "COLLECTQ_BROKER_URL",
    }
    assert "COLLECTQ_API_PORT" in str(info.value)


def test_unknown_profile_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_ENV", "production")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "COLLECTQ_ENV" in info.value.errors


def test_prod_refuses_missing_urls_guest_broker_wildcard_cors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLLECTQ_ENV", "prod")
    monkeypatch.setenv("COLLECTQ_CORS_ORIGINS", "*")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert {
        "COLLECTQ_REDIS_URL",
        "COLLECTQ_BROKER_URL",
        "COLLECTQ_CORS_ORIGINS",
        "COLLECTQ_SECRET_KEY",
    } <= set(info.value.errors)
    monkeypatch.setenv("COLLECTQ_BROKER_URL", "amqp://guest:guest@rabbit//")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "guest" in " ".join(info.value.errors["COLLECTQ_BROKER_URL"])


def test_secret_from_file_and_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value")
    monkeypatch.setenv("COLLECTQ_SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("COLLECTQ_BROKER_URL", "amqp://app:hunter2@rabbit:5672/vh")
    s = load_settings()
    assert s.secret_key == "s3cr3t-value"
    shown = s.redacted()
    assert shown["COLLECTQ_SECRET_KEY"] == "***"
    assert shown["COLLECTQ_BROKER_URL"] == "amqp://app:***@rabbit:5672/vh"
    assert "s3cr3t-value" not in repr(s)
    assert "hunter2" not in str(shown)


def test_redact_url_leaves_passwordless_urls() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_time_limits_must_be_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_SOFT_TIME_LIMIT", "100")
    monkeypatch.setenv("COLLECTQ_HARD_TIME_LIMIT", "50")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "COLLECTQ_HARD_TIME_LIMIT" in info.value.errors


def test_collectors_have_their_own_pool_defaults() -> None:
    s = load_settings()
    assert (s.pool_for("http").pool, s.pool_for("http").concurrency) == ("threads", 32)
    shot = s.pool_for("screenshot")
    assert (shot.pool, shot.concurrency, shot.prefetch) == ("prefork", 2, 1)
    plugin = s.pool_for("someplugin")  # no defaults of its own: the global worker settings
    assert (plugin.pool, plugin.concurrency, plugin.soft_time_limit) == ("threads", 16, 60)


def test_pool_override_keeps_unnamed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_POOL_SCREENSHOT", "concurrency=4, hard_time_limit=120")
    monkeypatch.setenv("COLLECTQ_POOL_MYPLUGIN", "pool=prefork,prefetch=2")
    s = load_settings()
    shot = s.pool_for("screenshot")
    assert (shot.pool, shot.concurrency, shot.prefetch, shot.hard_time_limit) == (
        "prefork", 4, 1, 120,
    )  # fmt: skip
    assert (s.pool_for("myplugin").pool, s.pool_for("myplugin").prefetch) == ("prefork", 2)
    assert s.redacted()["COLLECTQ_POOLS"]["screenshot"]["concurrency"] == 4


def test_bad_pool_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_POOL_HTTP", "pool=gevent,concurrency=0,color=red")
    monkeypatch.setenv("COLLECTQ_POOL_DNS", "soft_time_limit=100")
    with pytest.raises(ConfigError) as info:
        load_settings()
    http = " ".join(info.value.errors["COLLECTQ_POOL_HTTP"])
    assert "pool must be one of" in http
    assert "concurrency must be a positive integer" in http
    assert "'color=red'" in http
    assert "hard_time_limit must be greater" in info.value.errors["COLLECTQ_POOL_DNS"][0]


def test_heartbeat_timeout_must_cover_two_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_HEARTBEAT_INTERVAL", "10")
    monkeypatch.setenv("COLLECTQ_HEARTBEAT_TIMEOUT", "15")
    monkeypatch.setenv("COLLECTQ_JOB_DEADLINE", "999999999")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {"COLLECTQ_HEARTBEAT_TIMEOUT", "COLLECTQ_JOB_DEADLINE"}


def test_reliability_settings_reach_celery() -> None:
    import celeryconfig

    s = load_settings(reap_interval=7.0, soft_shutdown_timeout=12.0, broker_heartbeat=9.0)
    conf = celeryconfig.build(s, ["http"])
    assert conf["beat_schedule"]["reap"]["schedule"] == 7.0
    assert conf["beat_schedule"]["reap"]["task"] == "maintenance.reap"
    assert conf["task_routes"][0]["maintenance.reap"] == {"queue": "maintenance"}
    assert conf["worker_soft_shutdown_timeout"] == 12.0
    assert conf["broker_heartbeat"] == 9.0
