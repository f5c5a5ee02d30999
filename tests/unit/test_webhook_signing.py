"""Webhook signing, events and the submit-time guard decision: pure logic, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from app.errors import ValidationFailed
from app.jobs.callback import check_callback_url
from app.webhooks.events import body_for, events_for
from app.webhooks.secrets import WebhookSecret
from app.webhooks.sender import sign
from collectors.base import NetworkPolicy

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()


def test_signature_is_the_raw_hmac_recipe_of_the_readme() -> None:
    when = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    body = '{"type":"job.succeeded"}'
    header = sign([SECRET], "j_1.job.succeeded", when, body)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"j_1.job.succeeded.{int(when.timestamp())}.{body}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert header == f"v1,{expected}"


def test_two_secrets_sign_twice_and_each_verifies() -> None:
    now = datetime.now(UTC)
    body = '{"a":1}'
    header = sign([SECRET, OTHER], "m1", now, body)
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": header,
    }
    assert len(header.split(" ")) == 2
    assert Webhook(SECRET).verify(body, headers) == {"a": 1}
    assert Webhook(OTHER).verify(body, headers) == {"a": 1}


def test_previous_secret_signs_only_during_the_overlap() -> None:
    s = WebhookSecret(current=SECRET, created_at="", previous=OTHER, previous_until=100.0)
    assert s.signing(now=99.0) == [SECRET, OTHER]
    assert s.signing(now=100.0) == [SECRET]
    assert s.as_dict(now=101.0)["previous"] is None


@pytest.mark.parametrize(
    ("status", "on", "changed", "events"),
    [
        ("succeeded", ["always"], False, ["job.succeeded"]),
        ("succeeded", ["failure"], False, []),
        ("partial", ["failure"], False, ["job.partial"]),
        ("failed", ["failure"], False, ["job.failed"]),
        ("expired", ["always"], False, ["job.failed"]),
        ("cancelled", ["always"], False, []),
        ("succeeded", ["change"], True, ["schedule.changed"]),
        ("succeeded", ["change"], False, []),
        ("failed", ["always", "failure", "change"], True, ["job.failed", "schedule.changed"]),
    ],
)
def test_events_of_a_final_job(
    status: str, on: list[str], changed: bool, events: list[str]
) -> None:
    assert events_for(status, on, changed) == events


def test_body_links_artifacts_under_the_public_url_or_relative() -> None:
    env: dict[str, Any] = {
        "id": "j_1",
        "results": {
            "http": {"artifacts": [{"name": "body", "size": 3}, {"name": "big", "dropped": "x"}]}
        },
    }
    absolute = body_for("job.succeeded", env, public_url="https://cq.example.org/")
    arts = absolute["data"]["results"]["http"]["artifacts"]
    assert arts[0]["url"] == "https://cq.example.org/v1/jobs/j_1/artifacts/body"
    assert "url" not in arts[1]
    relative = body_for("schedule.changed", env, public_url=None, change={"diff": 1})
    assert (
        relative["data"]["results"]["http"]["artifacts"][0]["url"] == "/v1/jobs/j_1/artifacts/body"
    )
    assert relative["data"]["change"] == {"diff": 1}
    assert "url" not in env["results"]["http"]["artifacts"][0]  # the envelope is not changed


def test_inline_artifacts_greedy_within_the_limit_in_envelope_order() -> None:
    arts = [
        {"name": "a", "size": 4},
        {"name": "big", "size": 9},
        {"name": "gone", "size": 1},
        {"name": "b", "size": 2},
        {"name": "dropped", "size": 1, "dropped": "budget"},
    ]
    env: dict[str, Any] = {"id": "j_1", "results": {"http": {"artifacts": arts}}}
    stored = {"a": b"aaaa", "big": b"b" * 9, "b": b"bb", "dropped": b"d"}
    body = body_for("job.succeeded", env, public_url=None, read=stored.get, inline_max=6)
    a, big, gone, b, dropped = body["data"]["results"]["http"]["artifacts"]
    assert base64.b64decode(a["content_base64"]) == b"aaaa"
    assert a["inline"] is True
    assert big == {
        **arts[1],
        "url": big["url"],
        "inline": False,
        "reason": "over WEBHOOK_INLINE_MAX_BYTES",
    }
    assert gone["inline"] is False
    assert gone["reason"] == "expired"
    assert base64.b64decode(b["content_base64"]) == b"bb"  # 4 + 2 fit in 6
    assert dropped == arts[4]  # never stored: neither link nor bytes
    links = body_for("job.succeeded", env, public_url=None)
    assert all("inline" not in x for x in links["data"]["results"]["http"]["artifacts"])


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "https://[::1]/x",
        "http://localhost:8080/x",
        "http://api.localhost/x",
        "http://[::ffff:192.168.1.1]/x",
        "ftp://example.org/",
        "http://user:pw@example.org/",
    ],
)
def test_callback_url_refused_at_submit_names_the_field(url: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_callback_url(url, NetworkPolicy())
    assert list(caught.value.errors) == ["callback_url"]


def test_callback_url_allowed_by_the_allowlist_or_left_to_delivery() -> None:
    loopback = NetworkPolicy.from_strings(["127.0.0.0/8"])
    check_callback_url("http://127.0.0.1:9/x", loopback)
    check_callback_url("http://localhost:9/x", loopback)
    check_callback_url("https://93.184.215.14/hook", NetworkPolicy())  # global: fine
    # a name is not looked up at submit (the guarded connection judges it at delivery)
    check_callback_url("https://hooks.example.invalid/x", NetworkPolicy())
