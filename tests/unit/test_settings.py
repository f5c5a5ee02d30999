from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.options import declared
from app.settings import (
    FAMILIES,
    ConfigError,
    as_environ,
    load_settings,
    read_setting,
    redact_url,
)
from app.settings_doc import (
    POLICY_TABLE_END,
    POLICY_TABLE_START,
    POOL_TABLE_END,
    POOL_TABLE_START,
    TABLE_END,
    TABLE_START,
    policy_table_markdown,
    pool_table_markdown,
    settings_table_markdown,
    with_settings_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_dev_defaults_allow_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_ENV", "dev")
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


GOOD_PROD = {
    "COLLECTQ_ENV": "prod",
    "COLLECTQ_REDIS_URL": "redis://:a-long-redis-password@redis:6379/0",
    "COLLECTQ_BROKER_URL": "amqp://collectq:a-long-broker-password@rabbit:5672/collectq",
    "COLLECTQ_SECRET_KEY": "k" * 40,
}


def _prod(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for key, value in {**GOOD_PROD, **extra}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("profile", ["prod", "staging"])
def test_a_hardened_profile_starts_with_good_settings(monkeypatch, profile) -> None:
    _prod(monkeypatch, COLLECTQ_ENV=profile)
    s = load_settings()
    assert s.auth is True
    assert s.debug is False


@pytest.mark.parametrize("profile", ["prod", "staging"])
@pytest.mark.parametrize(
    ("extra", "variable", "says"),
    [
        ({"COLLECTQ_SECRET_KEY": ""}, "COLLECTQ_SECRET_KEY", "required"),
        ({"COLLECTQ_SECRET_KEY": "changeme"}, "COLLECTQ_SECRET_KEY", "default or short"),
        ({"COLLECTQ_SECRET_KEY": "short-key"}, "COLLECTQ_SECRET_KEY", "default or short"),
        ({"COLLECTQ_BROKER_URL": "amqp://guest:guest@rabbit//"}, "COLLECTQ_BROKER_URL", "guest"),
        ({"COLLECTQ_BROKER_URL": "amqp://rabbit//"}, "COLLECTQ_BROKER_URL", "missing"),
        ({"COLLECTQ_BROKER_URL": "amqp://app:changeme@rabbit//"}, "COLLECTQ_BROKER_URL",
         "default"),
        ({"COLLECTQ_REDIS_URL": "redis://:password@redis/0"}, "COLLECTQ_REDIS_URL", "default"),
        ({"COLLECTQ_CORS_ORIGINS": "*"}, "COLLECTQ_CORS_ORIGINS", "wildcard"),
        ({"COLLECTQ_DEBUG": "true"}, "COLLECTQ_DEBUG", "debug must be off"),
        ({"COLLECTQ_AUTH": "off"}, "COLLECTQ_AUTH", "only be off in the dev profile"),
        ({"COLLECTQ_FLOWER_BASIC_AUTH": "admin:admin"}, "COLLECTQ_FLOWER_BASIC_AUTH",
         "non-default"),
    ],
)  # fmt: skip
def test_hardened_profiles_refuse_each_bad_setting(
    monkeypatch, profile, extra, variable, says
) -> None:
    _prod(monkeypatch, COLLECTQ_ENV=profile, **extra)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {variable}
    assert says in " ".join(info.value.errors[variable])
    shown = str(info.value)  # the message names the variable, never the secret
    for secret in ("changeme", "short-key", "guest:guest", ":password@", "admin:admin"):
        assert secret not in shown


def test_auth_off_only_in_dev_on_loopback(monkeypatch) -> None:
    monkeypatch.setenv("COLLECTQ_ENV", "dev")
    monkeypatch.setenv("COLLECTQ_AUTH", "off")
    assert load_settings().auth is False
    monkeypatch.setenv("COLLECTQ_API_HOST", "0.0.0.0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "loopback" in info.value.errors["COLLECTQ_AUTH"][0]
    monkeypatch.setenv("COLLECTQ_API_HOST", "127.0.0.1")
    monkeypatch.setenv("COLLECTQ_ENV", "test")
    with pytest.raises(ConfigError):
        load_settings()


def test_auth_is_on_by_default_in_every_profile(monkeypatch) -> None:
    for profile in ("dev", "test"):
        monkeypatch.setenv("COLLECTQ_ENV", profile)
        assert load_settings().auth is True


def test_wildcard_cors_with_credentials_refused_everywhere(monkeypatch) -> None:
    monkeypatch.setenv("COLLECTQ_CORS_ORIGINS", "*")
    monkeypatch.setenv("COLLECTQ_CORS_CREDENTIALS", "true")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "credentials" in info.value.errors["COLLECTQ_CORS_ORIGINS"][0].lower()


def test_bad_rate_limit_and_jwt_settings_are_named(monkeypatch) -> None:
    monkeypatch.setenv("COLLECTQ_RATE_LIMIT_SUBMIT", "lots")
    monkeypatch.setenv(
        "COLLECTQ_JWT_KEYS", '{"keys": [{"kid": "a", "alg": "HS256", "k": "c2hvcnQ"}]}'
    )
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {
        "COLLECTQ_RATE_LIMIT_SUBMIT",
        "COLLECTQ_JWT_KEYS",
        "COLLECTQ_JWT_ISSUER",
        "COLLECTQ_JWT_AUDIENCE",
    }
    assert "c2hvcnQ" not in str(info.value)


def test_new_secrets_are_redacted(monkeypatch, tmp_path) -> None:
    keys = tmp_path / "jwt.json"
    keys.write_text('{"keys": [{"kid": "a", "alg": "HS256", "k": "' + "QUJD" * 12 + '"}]}')
    monkeypatch.setenv("COLLECTQ_JWT_KEYS_FILE", str(keys))
    monkeypatch.setenv("COLLECTQ_JWT_ISSUER", "i")
    monkeypatch.setenv("COLLECTQ_JWT_AUDIENCE", "a")
    monkeypatch.setenv("COLLECTQ_FLOWER_BASIC_AUTH", "ops:flower-password-long")
    s = load_settings()
    shown = json.dumps(s.redacted())
    assert "QUJD" not in shown
    assert "flower-password-long" not in shown
    assert "QUJD" not in repr(s)
    assert "flower-password-long" not in repr(s)


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


def test_a_non_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    port = tmp_path / "port"
    port.write_text("8123\n")  # as `echo 8123 > port` writes it
    monkeypatch.setenv("COLLECTQ_API_PORT_FILE", str(port))
    monkeypatch.setenv("COLLECTQ_API_PORT", "9999")  # the file wins
    assert load_settings().api_port == 8123
    port.write_text("99999")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {"COLLECTQ_API_PORT"}


def test_an_unreadable_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("COLLECTQ_SECRET_KEY_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("COLLECTQ_POOL_DNS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {"COLLECTQ_SECRET_KEY", "COLLECTQ_POOL_DNS"}
    assert "COLLECTQ_SECRET_KEY_FILE" in info.value.errors["COLLECTQ_SECRET_KEY"][0]


def test_pool_settings_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    spec = tmp_path / "pool"
    spec.write_text("concurrency=6,prefetch=2\n")
    monkeypatch.setenv("COLLECTQ_POOL_SCREENSHOT_FILE", str(spec))
    shot = load_settings().pool_for("screenshot")
    assert (shot.pool, shot.concurrency, shot.prefetch) == ("prefork", 6, 2)
    spec.write_text("concurrency=none")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.errors == {
        "COLLECTQ_POOL_SCREENSHOT": ["concurrency must be a positive integer"]
    }


@pytest.mark.parametrize("value", ["0", "65536", "redis"])
def test_embedded_redis_port_is_validated_by_name(monkeypatch, value) -> None:
    assert load_settings().embedded_redis_port == 6390
    monkeypatch.setenv("COLLECTQ_EMBEDDED_REDIS_PORT", value)
    for load in (load_settings, lambda: read_setting("embedded_redis_port")):
        with pytest.raises(ConfigError) as info:
            load()
        assert set(info.value.errors) == {"COLLECTQ_EMBEDDED_REDIS_PORT"}


def test_a_bad_value_brings_no_second_error_about_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_HEARTBEAT_INTERVAL", "often")
    monkeypatch.setenv("COLLECTQ_HEARTBEAT_TIMEOUT", "15")  # < 2 x the default interval
    monkeypatch.setenv("COLLECTQ_HARD_TIME_LIMIT", "long")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {"COLLECTQ_HEARTBEAT_INTERVAL", "COLLECTQ_HARD_TIME_LIMIT"}


def test_overrides_win_and_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTQ_API_PORT", "not-a-port")
    assert load_settings(api_port=8001).api_port == 8001
    with pytest.raises(ConfigError) as info:
        load_settings(api_port=8001, broker_url="http://nope")
    assert set(info.value.errors) == {"COLLECTQ_BROKER_URL"}
    with pytest.raises(TypeError):
        load_settings(no_such_setting=1)


def test_as_environ_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `collectq up` hands its children loads back as the same values."""
    values = {
        "env": "dev",
        "auth": False,
        "redis_url": "redis://127.0.0.1:6390/0",
        "max_wait": 5,
        "cors_methods": ("GET", "POST"),
        "publish_timeout": 2.5,
        "log_json": True,
    }
    for var, text in as_environ(**values).items():
        monkeypatch.setenv(var, text)
    s = load_settings()
    assert {name: getattr(s, name) for name in values} == values


def test_every_setting_is_in_config_check_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli.main import main

    names = {f"COLLECTQ_{s.name.upper()}" for s in declared()}
    assert set(load_settings().redacted()) == names
    monkeypatch.setenv("COLLECTQ_SECRET_KEY", "a-secret-never-printed")
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown) == names
    assert shown["COLLECTQ_SECRET_KEY"] == "***"
    assert shown["COLLECTQ_EMBEDDED_REDIS_PORT"] == 6390


def test_every_setting_is_declared_completely() -> None:
    for s in declared():
        assert s.option.help, s.name
        assert s.var == f"COLLECTQ_{s.name.upper()}" or s.kind in FAMILIES
        assert s.kind in {"str", "int", "float", "bool", "list", "switch", *FAMILIES}


def test_readme_tables_are_generated_from_the_declarations() -> None:
    text = README.read_text()
    assert TABLE_START in text
    assert TABLE_END in text, f"README.md lacks the {TABLE_END} marker"
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip("\n") + "\n"
    assert table == settings_table_markdown(), (
        "README.md's settings table differs from app/options.py; regenerate it with "
        "`.venv/bin/collectq config table --readme README.md`"
    )
    assert text == with_settings_table(text), (
        "README.md's worker (POOL_<NAME>) or policy (POLICY_<NAME>) table differs from "
        "app/options.py; regenerate it "
        "with `.venv/bin/collectq config table --readme README.md`"
    )


def test_config_table_prints_and_rewrites_the_table(tmp_path) -> None:
    from app.cli.main import main

    printed = CliRunner().invoke(main, ["config", "table"])
    assert printed.exit_code == 0
    assert printed.stdout == settings_table_markdown()
    readme = tmp_path / "README.md"
    pools = f"{POOL_TABLE_START}\n| stale |\n{POOL_TABLE_END}\n"
    policies = f"{POLICY_TABLE_START}\n| stale |\n{POLICY_TABLE_END}\n"
    readme.write_text(f"intro\n{TABLE_START}\n| stale |\n{TABLE_END}\n{pools}{policies}after\n")
    assert CliRunner().invoke(main, ["config", "table", "--readme", str(readme)]).exit_code == 0
    pools = f"{POOL_TABLE_START}\n{pool_table_markdown()}{POOL_TABLE_END}\n"
    policies = f"{POLICY_TABLE_START}\n{policy_table_markdown()}{POLICY_TABLE_END}\n"
    assert readme.read_text() == (
        f"intro\n{TABLE_START}\n{printed.stdout}{TABLE_END}\n{pools}{policies}after\n"
    )
    readme.write_text("no markers")
    assert CliRunner().invoke(main, ["config", "table", "--readme", str(readme)]).exit_code == 1


# --- issue 11 item 7: redact_url hides every form of password --------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://u:p1-secret@h1//;amqp://u:p2-secret@h2//", "amqp://u:***@h1//;amqp://u:***@h2//"),
        ("amqp://u:p1-secret@h1//; amqp://u:p2-secret@h2//", "amqp://u:***@h1//; amqp://u:***@h2//"),
        ("redis://h/0?password=qx-secret", "redis://h/0?password=***"),
        ("redis://h:6379/0?db=1&pass=qy-secret", "redis://h:6379/0?db=1&pass=***"),
        ("redis://h/0?PASSWORD=qz-secret&x=1", "redis://h/0?PASSWORD=***&x=1"),
        ("unix:///run/redis.sock?db=0&password=uz-secret", "unix:///run/redis.sock?db=0&password=***"),
        ("unix://:us-secret@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("rediss://user:pw-secret@h:6380/0", "rediss://user:***@h:6380/0"),
        ("redis://:pw-secret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("amqp://u:p%40w-secret@h//", "amqp://u:***@h//"),
        ("amqp://u:p@w-secret@h//", "amqp://u:***@h//"),
        ("redis://lone-secret@h/0", "redis://***@h/0"),
    ],
)  # fmt: skip
def test_redact_url_hides_every_password_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "secret" not in redact_url(url)


def test_redact_url_leaves_urls_without_secrets() -> None:
    for url in ("redis://127.0.0.1:6379/0", "amqp://h1//;amqp://h2//", "redis://h/0?db=2"):
        assert redact_url(url) == url


def test_config_check_hides_failover_and_query_passwords(monkeypatch) -> None:
    from app.cli.main import main

    monkeypatch.setenv("COLLECTQ_BROKER_URL", "amqp://u:first-pw@h1//;amqp://u:second-pw@h2//")
    monkeypatch.setenv("COLLECTQ_REDIS_URL", "redis://h/0?password=query-pw")
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 0, result.output
    for secret in ("first-pw", "second-pw", "query-pw"):
        assert secret not in result.output


# --- issue 11 item 8: no silent dev profile ----------------------------------------------


def test_a_process_without_env_gets_no_dev_allowances(monkeypatch) -> None:
    s = load_settings()
    assert s.net_allow == ()  # no loopback targets unless COLLECTQ_ENV=dev says so
    monkeypatch.setenv("COLLECTQ_AUTH", "off")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {"COLLECTQ_AUTH"}
    assert "COLLECTQ_ENV=dev" in info.value.errors["COLLECTQ_AUTH"][0]
    monkeypatch.setenv("COLLECTQ_ENV", "dev")
    assert load_settings().auth is False
    assert load_settings().net_allow == ("127.0.0.0/8", "::1/128")
    monkeypatch.delenv("COLLECTQ_AUTH")
    assert load_settings(env="dev").net_allow == ("127.0.0.0/8", "::1/128")  # as `up` does


def test_net_allow_still_wins_without_a_profile(monkeypatch) -> None:
    monkeypatch.setenv("COLLECTQ_NET_ALLOW", "10.0.0.0/8")
    assert load_settings().net_allow == ("10.0.0.0/8",)


def test_the_container_image_sets_the_prod_profile() -> None:
    dockerfile = (README.parent / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    env_lines = [line for line in dockerfile.splitlines() if line.startswith("ENV ")]
    assert any("COLLECTQ_ENV=prod" in line.split() for line in env_lines), env_lines


@pytest.mark.parametrize(
    ("local", "remote", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("::1", "::1", True),
        ("127.0.0.1", "10.1.2.3", False),  # a proxy on this host forwarding the world
        ("10.1.2.3", "127.0.0.1", False),
        ("0.0.0.0", "127.0.0.1", False),
        ("192.168.1.5", "192.168.1.9", False),
        (None, "127.0.0.1", False),  # no socket to ask: refuse
        ("127.0.0.1", None, False),
        ("/run/collectq.sock", "", False),  # a unix socket can be proxied to
    ],
)
def test_an_open_api_answers_only_loopback_connections(local, remote, allowed) -> None:
    from app.settings import open_request_allowed

    assert open_request_allowed(local, remote) is allowed


def test_auth_off_outside_up_is_refused(monkeypatch) -> None:
    from app.settings import open_api_refusal

    monkeypatch.setenv("COLLECTQ_ENV", "dev")
    monkeypatch.setenv("COLLECTQ_AUTH", "off")
    s = load_settings()
    run = {"token": "t" * 43, "pid": 1}
    assert "collectq up" in (open_api_refusal(s, None, run) or "")
    assert "collectq up" in (open_api_refusal(s, "t" * 43, None) or "")
    assert "collectq up" in (open_api_refusal(s, "x" * 43, run) or "")
    assert open_api_refusal(s, "t" * 43, run) is None
    assert open_api_refusal(load_settings(auth=True), None, None) is None


# --- issue 11 item 9: hardened profiles refuse the remaining open doors -------------------


@pytest.mark.parametrize("profile", ["prod", "staging"])
@pytest.mark.parametrize(
    ("extra", "variable", "says"),
    [
        ({"COLLECTQ_REDIS_URL": "redis://redis:6379/0"}, "COLLECTQ_REDIS_URL",
         "COLLECTQ_ALLOW_UNAUTHENTICATED_REDIS"),
        ({"COLLECTQ_REDIS_URL": "unix:///run/redis.sock?db=0"}, "COLLECTQ_REDIS_URL",
         "COLLECTQ_ALLOW_UNAUTHENTICATED_REDIS"),
        ({"COLLECTQ_REDIS_URL": "redis://redis/0?password=changeme"}, "COLLECTQ_REDIS_URL",
         "default"),
        ({"COLLECTQ_BROKER_URL": "redis://redis:6379/1"}, "COLLECTQ_BROKER_URL", "missing"),
        ({"COLLECTQ_BROKER_URL": "amqp://app:a-long-broker-password@r1//;amqp://r2//"},
         "COLLECTQ_BROKER_URL", "missing"),
        ({"COLLECTQ_BROKER_URL": "amqp://app:a-long-broker-password@r1//;amqp://app:guest@r2//"},
         "COLLECTQ_BROKER_URL", "default"),
        ({"COLLECTQ_NET_ALLOW": "10.0.0.0/8"}, "COLLECTQ_NET_ALLOW",
         "COLLECTQ_NET_ALLOW_PRIVATE"),
        ({"COLLECTQ_NET_ALLOW": "0.0.0.0/0"}, "COLLECTQ_NET_ALLOW", "COLLECTQ_NET_ALLOW_PRIVATE"),
        ({"COLLECTQ_NET_ALLOW": "fd00::/8"}, "COLLECTQ_NET_ALLOW", "COLLECTQ_NET_ALLOW_PRIVATE"),
        ({"COLLECTQ_RATE_LIMIT_ENABLED": "false"}, "COLLECTQ_RATE_LIMIT_ENABLED",
         "COLLECTQ_ALLOW_NO_RATE_LIMIT"),
        ({"COLLECTQ_MAX_QUEUED_JOBS": "0"}, "COLLECTQ_MAX_QUEUED_JOBS", "cap"),
    ],
)  # fmt: skip
def test_hardened_profiles_refuse_open_doors(monkeypatch, profile, extra, variable, says) -> None:
    _prod(monkeypatch, COLLECTQ_ENV=profile, **extra)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert set(info.value.errors) == {variable}
    assert says in " ".join(info.value.errors[variable])
    assert "changeme" not in str(info.value)


@pytest.mark.parametrize(
    "extra",
    [
        {"COLLECTQ_REDIS_URL": "redis://redis:6379/0",
         "COLLECTQ_ALLOW_UNAUTHENTICATED_REDIS": "true"},
        {"COLLECTQ_REDIS_URL": "redis://redis/0?password=a-long-redis-password"},
        {"COLLECTQ_REDIS_URL": "rediss://app:a-long-redis-password@redis:6380/0"},
        {"COLLECTQ_BROKER_URL": "redis://:a-long-broker-password@redis:6379/1"},
        {"COLLECTQ_NET_ALLOW": "10.0.0.0/8", "COLLECTQ_NET_ALLOW_PRIVATE": "true"},
        {"COLLECTQ_RATE_LIMIT_ENABLED": "false", "COLLECTQ_ALLOW_NO_RATE_LIMIT": "true"},
        {"COLLECTQ_MAX_QUEUED_JOBS": "1000000"},
    ],
)  # fmt: skip
def test_hardened_opt_ins_are_named_and_explicit(monkeypatch, extra) -> None:
    _prod(monkeypatch, **extra)
    load_settings()


def test_compose_prod_environment_passes_config_check(monkeypatch, tmp_path) -> None:
    """docker-compose.yml's shared environment, with its secrets as deploy/secrets/README.md
    describes them, loads in the prod profile (what the stack runs)."""
    from tests.composefile import load_compose

    compose = load_compose()
    env = compose["x-collectq"]["environment"]
    assert env["COLLECTQ_ENV"] == "prod"
    samples = {
        "broker_url": "amqp://collectq:a-long-rabbit-password@rabbitmq:5672//",
        "redis_url": "redis://:a-long-redis-password@redis:6379/0",
        "redis_password": "a-long-redis-password",
        "secret_key": "s" * 48,
        "rabbitmq_password": "a-long-rabbit-password",
    }
    for name in compose["x-collectq"]["secrets"]:
        (tmp_path / name).write_text(samples[name] + "\n")
    for var, value in env.items():
        value = str(value)
        if var.endswith("_FILE"):
            value = str(tmp_path / value.removeprefix("/run/secrets/"))
        monkeypatch.setenv(var, value)
    s = load_settings()
    assert s.env == "prod"


# --- issue 11 item 3: the CLI finds the `collectq up` of its directory ---------------------


def _run_file(directory: Path, pid: int) -> None:
    (directory / ".collectq").mkdir()
    (directory / ".collectq" / "run.json").write_text(
        json.dumps(
            {
                "pid": pid,
                "token": "t" * 43,
                "redis_url": "redis://127.0.0.1:16399/0",
                "broker_url": "redis://127.0.0.1:16399/1",
            }
        )
    )


def test_the_run_file_of_a_live_up_gives_the_urls(monkeypatch, tmp_path) -> None:
    import os

    monkeypatch.chdir(tmp_path)
    _run_file(tmp_path, os.getpid())
    s = load_settings()
    assert (s.redis_url, s.broker_url) == ("redis://127.0.0.1:16399/0", "redis://127.0.0.1:16399/1")
    assert read_setting("redis_url") == "redis://127.0.0.1:16399/0"
    # either variable set: the run file is ignored as a whole (both or neither, as `up` does)
    monkeypatch.setenv("COLLECTQ_BROKER_URL", "amqp://u:p@rabbit//")
    s = load_settings()
    assert (s.redis_url, s.broker_url) == ("redis://127.0.0.1:6379/0", "amqp://u:p@rabbit//")
    monkeypatch.delenv("COLLECTQ_BROKER_URL")
    assert load_settings(redis_url="redis://h/0").broker_url.startswith("amqp://")  # override
    _prod(monkeypatch)  # staging/prod never take URLs from a run file
    monkeypatch.delenv("COLLECTQ_REDIS_URL")
    monkeypatch.delenv("COLLECTQ_BROKER_URL")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert {"COLLECTQ_REDIS_URL", "COLLECTQ_BROKER_URL"} <= set(info.value.errors)


def test_the_run_file_of_a_dead_up_is_ignored(monkeypatch, tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    monkeypatch.chdir(tmp_path)
    _run_file(tmp_path, int(done.stdout))
    assert load_settings().redis_url == "redis://127.0.0.1:6379/0"
