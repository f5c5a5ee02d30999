"""API keys over time (issue 16): a key rotating itself, expiry and rotation-period notices
(headers, the `key.expiring` webhook through real workers, the gauge), the audit trail."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from standardwebhooks.webhooks import Webhook

from app.auth.apikeys import parse_token
from app.metrics_scrape import ScrapeCollector
from app.runtime import runtime
from tests.conftest import wait_for
from tests.integration.test_security import JWT_ENV, _jwt
from tests.webhookreceiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

READ = ["jobs:read"]
DAY = 86400


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def _notice(resp: Any) -> dict[str, str | None]:
    return {h: resp.headers.get(h) for h in ("Deprecation", "Sunset", "Link")}


def _rotate_self(client: Any, **body: Any) -> Any:
    return client.post("/v1/keys/self/rotate", json=body)


def test_a_key_rotates_itself_both_work_during_the_overlap_then_only_the_new(make_app) -> None:
    app = make_app()
    keys = runtime(app).keys
    old, old_token = keys.create(
        owner="ci", name="deploy", scopes=READ, expires_at=time.time() + 30 * DAY
    )
    old_client = app.test_client(api_key=old_token)
    resp = _rotate_self(old_client, overlap=2)
    assert resp.status_code == 201, resp.json
    new = resp.json["key"]
    new_client = app.test_client(api_key=new["token"])
    assert new["rotated_from"] == old.prefix
    assert new["scopes"] == READ
    assert resp.json["previous"]["state"] == "rotating"
    # the successor lives as long as the old key did, from now (not until the old expiry)
    assert keys.get(new["prefix"]).expires_at == pytest.approx(time.time() + 30 * DAY, abs=5)
    print(f"\nrotated {old.prefix} -> {new['prefix']} (overlap 2 s)")
    for who, client in (("old", old_client), ("new", new_client)):
        status = client.get("/v1/jobs").status_code
        print(f"  during the overlap: {who} key GET /v1/jobs -> {status}")
        assert status == 200
    # the token is handed out once: the old key cannot rotate again
    again = _rotate_self(old_client)
    assert again.status_code == 409, again.json
    time.sleep(2.1)  # the overlap is the behaviour under test
    after = {"old": old_client.get("/v1/jobs").status_code}
    after["new"] = new_client.get("/v1/jobs").status_code
    print(f"  after the overlap: {after}")
    assert after == {"old": 401, "new": 200}
    assert keys.get(old.prefix).state(time.time()) == "rotated_out"


def test_concurrent_self_rotations_hand_out_one_successor(make_app) -> None:
    app = make_app()
    keys = runtime(app).keys
    key, token = keys.create(owner="racer", name="n", scopes=READ)
    answers: list[int] = []
    start = threading.Barrier(6)

    def rotate() -> None:
        client = app.test_client(api_key=token)
        start.wait()
        answers.append(_rotate_self(client, overlap=60).status_code)

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == [201] + [409] * 5
    owned = keys.list("racer")
    assert len(owned) == 2, [k.prefix for k in owned]  # the losers' successors are gone
    assert keys.get(key.prefix).rotated_to in {k.prefix for k in owned}


def test_a_flagged_key_is_told_in_every_answer(make_app) -> None:
    app = make_app(COLLECTQ_KEY_EXPIRY_WARNING=str(7 * DAY))
    keys = runtime(app).keys
    expires = time.time() + 3 * DAY
    expiring = keys.create(owner="o", name="soon", scopes=READ, expires_at=expires)[1]
    due_key, due = keys.create(owner="o", name="old", scopes=READ, rotation_period=DAY)
    # created two days ago with a one-day period: due since yesterday
    created = time.time() - 2 * DAY
    keys.redis.hset(keys.names.api_key(due_key.prefix), "created_at", repr(created))
    fine = keys.create(owner="o", name="fine", scopes=READ, expires_at=time.time() + 30 * DAY)[1]

    resp = app.test_client(api_key=expiring).get("/v1/jobs")
    assert resp.status_code == 200
    print(f"\nexpiring key: {_notice(resp)}")
    # within the window from its creation on: flagged since it was made
    assert int(resp.headers["Deprecation"].removeprefix("@")) == pytest.approx(time.time(), abs=5)
    sunset = email.utils.parsedate_to_datetime(resp.headers["Sunset"]).timestamp()
    assert sunset == pytest.approx(expires, abs=1)
    assert resp.headers["Link"] == '</v1/keys/self/rotate>; rel="deprecation"'

    resp = app.test_client(api_key=due).get("/v1/jobs")
    print(f"rotation due: {_notice(resp)}")
    assert resp.headers["Deprecation"] == f"@{int(created + DAY)}"
    assert "Sunset" not in resp.headers  # no expiry
    assert "Link" in resp.headers

    assert not {"Deprecation", "Sunset"} & set(
        app.test_client(api_key=fine).get("/v1/jobs").headers.keys()
    )
    flags = {k["name"]: k["flag"] for k in app.test_client().get("/v1/keys?owner=o").json["items"]}
    assert flags == {"soon": "expiring", "old": "rotation_due", "fine": None}
    # the gauge the alert rule reads (scraped in the API's master in production)
    families = {f.name: f for f in ScrapeCollector(runtime(app).settings).collect()}
    samples = {s.labels["reason"]: s.value for s in families["collectq_api_keys_flagged"].samples}
    assert samples["expiring"] >= 1
    assert samples["rotation_due"] >= 1


def test_key_expiring_webhook_reaches_the_owners_endpoint_once(
    make_app, start_worker, receiver: Receiver
) -> None:
    env = {"COLLECTQ_KEY_EXPIRY_WARNING": str(7 * DAY), "COLLECTQ_WEBHOOK_MAX_ATTEMPTS": "3"}
    app = make_app(**env)
    rt = runtime(app)
    owner_client = app.test_client(
        api_key=rt.keys.create(owner="acme", name="ops", scopes=["jobs:read", "jobs:write"])[1]
    )
    assert (
        owner_client.put("/v1/webhooks/endpoint", json={"url": f"{receiver.base}/acct"}).status_code
        == 200
    )
    secret = owner_client.get("/v1/webhooks/secret").json["secret"]
    key, _ = rt.keys.create(owner="acme", name="ci", scopes=READ, expires_at=time.time() + DAY)
    rt.keys.create(owner="nobody-listens", name="ci", scopes=READ, expires_at=time.time() + DAY)
    start_worker(queues="maintenance,webhooks", concurrency=2, **env)
    celery = Celery("t", broker=rt.settings.broker_url, set_as_current=False)
    celery.send_task("maintenance.reap", queue="maintenance")  # what beat sends every tick
    calls = wait_for(lambda: receiver.on("/acct") or None, timeout=30)
    payload = Webhook(secret).verify(calls[0].body, calls[0].headers)  # signed like any delivery
    print(
        f"\nkey.expiring: {payload['data']['prefix']} reason={payload['data']['reason']} "
        f"expires_at={payload['data']['expires_at']} webhook-id={calls[0].headers['webhook-id']}"
    )
    assert payload["type"] == "key.expiring"
    assert payload["data"]["prefix"] == key.prefix
    assert payload["data"]["reason"] == "expiring"
    assert payload["data"]["rotate_url"].endswith("/v1/keys/self/rotate")
    assert "token" not in payload["data"]
    assert "hash" not in payload["data"]
    # the next pass (lock released as if KEY_CHECK_INTERVAL had passed) sends nothing again
    rt.redis.delete(rt.store.keys.key_check_lock)
    celery.send_task("maintenance.reap", queue="maintenance")
    assert wait_for(lambda: rt.redis.exists(rt.store.keys.key_check_lock), timeout=10)  # it ran
    time.sleep(1)  # what it would have published has had time to arrive
    assert len(receiver.on("/acct")) == 1
    events = app.test_client().get(f"/v1/keys/{key.prefix}/events").json["items"]
    assert events[0]["event"] == "expiring"
    assert events[0]["reason"] == "expiring"


def test_the_audit_trail_says_who_did_what_and_never_a_secret(make_app) -> None:
    app = make_app()
    admin = app.test_client()
    admin_prefix = parse_token(app.config["TEST_API_KEY"])
    created = admin.post("/v1/keys", json={"owner": "aud", "name": "n", "scopes": READ}).json
    prefix, token = created["prefix"], created["token"]
    for ip in ("127.0.0.1", "127.0.0.9", "127.0.1.5"):  # two /24 networks
        client = app.test_client(api_key=token)
        client.environ_base["REMOTE_ADDR"] = ip
        assert client.get("/v1/jobs").status_code == 200
    rotated = _rotate_self(app.test_client(api_key=token), overlap=60).json["key"]
    assert admin.delete(f"/v1/keys/{rotated['prefix']}").status_code == 200

    items = admin.get(f"/v1/keys/{prefix}/events").json["items"]
    print(
        "\n"
        + "\n".join(
            f"  {e['at']} {e['event']:<12} actor={e['actor']} "
            f"{e.get('network') or e.get('successor') or ''}"
            for e in items
        )
    )
    assert [e["event"] for e in items] == ["rotated", "new_network", "new_network", "created"]
    assert items[-1]["actor"] == f"key:{admin_prefix}"
    assert items[0] == items[0] | {"actor": "self", "successor": rotated["prefix"]}
    assert {e.get("network") for e in items[1:3]} == {"127.0.0.0/24", "127.0.1.0/24"}
    successor = admin.get(f"/v1/keys/{rotated['prefix']}/events").json["items"]
    assert [(e["event"], e["actor"]) for e in successor] == [
        ("revoked", f"key:{admin_prefix}"),
        ("created", "self"),
    ]
    raw = str(items) + str(successor)
    assert token not in raw
    assert rotated["token"] not in raw
    # cursor pagination, newest first, no repeats
    page = admin.get(f"/v1/keys/{prefix}/events?limit=3").json
    rest = admin.get(f"/v1/keys/{prefix}/events?limit=3&cursor={page['next_cursor']}").json
    assert [e["event"] for e in page["items"] + rest["items"]] == [e["event"] for e in items]
    assert rest["next_cursor"] is None
    bad = admin.get(f"/v1/keys/{prefix}/events?cursor=nope")
    assert bad.status_code == 422
    assert "cursor" in bad.json["errors"]
    assert admin.get("/v1/keys/zzzzzzzzzzzz/events").status_code == 404


def test_a_jwt_cannot_rotate_itself_and_the_endpoint_url_is_checked(make_app) -> None:
    app = make_app(**JWT_ENV)
    by_jwt = app.test_client(api_key=_jwt("alice", "jobs:read")).post(
        "/v1/keys/self/rotate", json={}
    )
    assert by_jwt.status_code == 409
    assert "JWT" in by_jwt.json["detail"]
    owner = app.test_client(
        api_key=runtime(app).keys.create(owner="g", name="n", scopes=["jobs:write"])[1]
    )
    refused = owner.put("/v1/webhooks/endpoint", json={"url": "http://10.0.0.1/hook"})
    assert refused.status_code == 422
    assert "url" in refused.json["errors"]
    unknown = owner.put("/v1/webhooks/endpoint", json={"url": "https://h.example.org/", "x": 1})
    assert unknown.status_code == 422
    assert owner.get("/v1/webhooks/endpoint").status_code == 403  # jobs:read is not held
    assert owner.delete("/v1/webhooks/endpoint").status_code == 404


def test_admin_rotates_every_key_due_in_one_go(make_app, service_env: dict[str, str]) -> None:
    """`collectq keys rotate-due`: each key past its period gets a successor, printed once."""
    from click.testing import CliRunner

    from app.cli.main import main

    app = make_app()
    keys = runtime(app).keys
    due = [
        keys.create(owner="fleet", name=f"ci{i}", scopes=READ, rotation_period=DAY)[0]
        for i in range(2)
    ]
    for key in due:
        keys.redis.hset(keys.names.api_key(key.prefix), "created_at", repr(time.time() - 2 * DAY))
    fresh, _ = keys.create(owner="fleet", name="fresh", scopes=READ, rotation_period=DAY)
    env = service_env | {"COLLECTQ_REDIS_PREFIX": runtime(app).settings.redis_prefix}

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    table = cli("keys", "list", "--owner", "fleet")
    assert table.exit_code == 0
    assert "FLAG" in table.stdout
    assert table.stdout.count("rotation_due") == 2
    dry = cli("keys", "rotate-due", "--dry-run")
    assert sorted(json.loads(line)["previous"] for line in dry.stdout.splitlines()) == sorted(
        k.prefix for k in due
    )
    assert "token" not in dry.stdout
    done = cli("keys", "rotate-due", "--overlap", "1h")
    assert done.exit_code == 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    print("\n" + done.stdout + done.stderr)
    assert sorted(line["previous"] for line in lines) == sorted(k.prefix for k in due)
    for line in lines:
        assert app.test_client(api_key=line["token"]).get("/v1/jobs").status_code == 200
        assert keys.get(line["previous"]).rotated_to == line["prefix"]
    assert keys.get(fresh.prefix).rotated_to is None
    assert cli("keys", "rotate-due").stdout == ""  # the successors are not due yet
    trail = [json.loads(x) for x in cli("keys", "events", due[0].prefix).stdout.splitlines()]
    assert trail[0]["event"] == "rotated"
    assert trail[0]["actor"].startswith("cli:")
