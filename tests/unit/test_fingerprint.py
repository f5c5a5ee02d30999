"""Fingerprints of collector results (change detection): stable where the content is."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image, ImageDraw

from collectors import fingerprint as fp
from collectors.base import CollectContext, Collector, Result
from collectors.dns import DnsCollector
from collectors.http import HttpCollector
from collectors.screenshot import ScreenshotCollector
from collectors.tls import TlsCollector

EXACT = fp.FingerprintOptions()
PERCEPTUAL = fp.FingerprintOptions(screenshot_hash="perceptual")


def no_artifact(name: str) -> bytes | None:
    return None


def changes(c: Collector, before: dict[str, Any], after: dict[str, Any], **kw: Any) -> list[str]:
    opts = kw.pop("options", EXACT)
    a = c.fingerprint(before, opts, kw.get("read_before", no_artifact))
    b = c.fingerprint(after, opts, kw.get("read_after", no_artifact))
    assert a.kind == b.kind
    return c.changed_parts(a, b, opts)


# http ----------------------------------------------------------------------------------


def http_data(**over: Any) -> dict[str, Any]:
    data = {
        "status_code": 200,
        "reason": "OK",
        "headers": {"Content-Type": "text/html", "Date": "Mon, 30 Nov 2026 06:00:00 GMT"},
        "http_version": "HTTP/1.1",
        "final_url": "http://127.0.0.1:8000/",
        "redirects": [],
        "body_size": 5,
        "body_truncated": False,
        "body_sha256": "a" * 64,
        "content_type": "text/html",
        "timing": {"connect_ms": 1.0, "ttfb_ms": 2.0, "total_ms": 3.0},
    }
    return {**data, **over}


def test_http_fingerprint_ignores_timing_and_unchosen_headers() -> None:
    later = http_data(
        timing={"connect_ms": 9.0, "ttfb_ms": 9.0, "total_ms": 99.0},
        headers={"Content-Type": "text/html", "Date": "Tue, 01 Dec 2026 06:00:00 GMT"},
    )
    c = HttpCollector()
    assert changes(c, http_data(), later) == []
    assert c.fingerprint(http_data(), EXACT, no_artifact).digest == (
        c.fingerprint(later, EXACT, no_artifact).digest
    )


def test_http_fingerprint_changes_when_the_body_or_status_changes() -> None:
    c = HttpCollector()
    assert changes(c, http_data(), http_data(body_sha256="b" * 64)) == ["body_sha256"]
    assert changes(c, http_data(), http_data(status_code=404)) == ["status_code"]


def test_http_chosen_headers_are_content() -> None:
    opts = fp.FingerprintOptions(http_headers=("etag",))
    c = HttpCollector()
    before = http_data(headers={"ETag": '"1"'})
    after = http_data(headers={"ETag": '"2"'})
    assert changes(c, before, after, options=opts) == ["header:etag"]
    # another choice of headers is another kind: a new baseline, never a change
    assert (
        c.fingerprint(before, opts, no_artifact).kind
        != c.fingerprint(before, EXACT, no_artifact).kind
    )


# dns -----------------------------------------------------------------------------------


def dns_data(a: list[str], ttl: int = 300, rcode: str = "NOERROR") -> dict[str, Any]:
    records = [{"value": v, "ttl": ttl} for v in a]
    return {
        "name": "example.test",
        "resolver": "127.0.0.1:53",
        "nxdomain": rcode == "NXDOMAIN",
        "answers": {
            "A": {"rcode": rcode, "records": records, "withheld": [], "transport": "udp"},
            "MX": {"rcode": rcode, "records": [{"value": "10 MX.Example.test.", "ttl": ttl}]},
        },
    }


def test_dns_fingerprint_is_stable_under_reordering_and_ttls() -> None:
    c = DnsCollector()
    one = dns_data(["192.0.2.1", "192.0.2.2"], ttl=300)
    two = dns_data(["192.0.2.2", "192.0.2.1"], ttl=17)
    two["answers"] = dict(reversed(list(two["answers"].items())))
    assert changes(c, one, two) == []
    assert c.fingerprint(one, EXACT, no_artifact) == c.fingerprint(two, EXACT, no_artifact)


def test_dns_fingerprint_names_the_changed_type() -> None:
    c = DnsCollector()
    assert changes(c, dns_data(["192.0.2.1"]), dns_data(["192.0.2.9"])) == ["A"]
    assert changes(c, dns_data(["192.0.2.1"]), dns_data([], rcode="NXDOMAIN")) == [
        "A",
        "MX",
        "nxdomain",
    ]


# tls -----------------------------------------------------------------------------------


def tls_data(sha: str, not_after: str, days: int = 30) -> dict[str, Any]:
    leaf = {"sha256": sha, "not_after": not_after, "days_to_expiry": days, "subject": "CN=x"}
    return {
        "host": "127.0.0.1",
        "port": 443,
        "server_name": "localhost",
        "chain": [leaf, {"sha256": "c" * 64, "not_after": "2030-01-01T00:00:00+00:00"}],
        "verification": {"verified": True, "hostname_match": True, "error": None},
        "days_to_expiry": days,
    }


def test_tls_fingerprint_ignores_the_countdown_and_sees_a_renewal() -> None:
    c = TlsCollector()
    first = tls_data("a" * 64, "2027-01-01T00:00:00+00:00", days=30)
    assert changes(c, first, tls_data("a" * 64, "2027-01-01T00:00:00+00:00", days=29)) == []
    renewed = tls_data("b" * 64, "2027-04-01T00:00:00+00:00")
    assert changes(c, first, renewed) == ["leaf_sha256", "not_after"]


def test_tls_expiry_change_alone_is_a_change() -> None:
    c = TlsCollector()
    before = tls_data("a" * 64, "2027-01-01T00:00:00+00:00")
    assert changes(c, before, tls_data("a" * 64, "2027-02-01T00:00:00+00:00")) == ["not_after"]


# screenshot ----------------------------------------------------------------------------


def page_png(text: str, *, shade: int = 255, fmt: str = "PNG") -> bytes:
    img = Image.new("RGB", (640, 360), (shade, shade, shade))
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 40, 600, 120), fill=(20, 20, 120))
    for i, ch in enumerate(text):  # a big blocky "text": each character a box of its own
        x = 40 + i * 45
        draw.rectangle((x, 180, x + 30, 180 + (ord(ch) % 7 + 1) * 20), fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def shot_data(png: bytes) -> dict[str, Any]:
    import hashlib

    return {"png_sha256": hashlib.sha256(png).hexdigest(), "width": 640, "height": 360}


def reader(png: bytes) -> fp.ArtifactReader:
    return lambda name: png if name == "screenshot.png" else None


def noisy(png: bytes) -> bytes:
    """The same page with every pixel a little off (a JPEG round trip, saved as PNG)."""
    with Image.open(io.BytesIO(png)) as img:
        lossy = io.BytesIO()
        img.save(lossy, "JPEG", quality=85)
    with Image.open(io.BytesIO(lossy.getvalue())) as img:
        out = io.BytesIO()
        img.save(out, "PNG")
    return out.getvalue()


def test_screenshot_exact_sees_any_pixel_while_perceptual_tolerates_noise() -> None:
    c = ScreenshotCollector()
    base = page_png("hello world")
    nearly = noisy(base)
    assert changes(c, shot_data(base), shot_data(nearly)) == ["png_sha256"]
    kw = {"read_before": reader(base), "read_after": reader(nearly), "options": PERCEPTUAL}
    assert changes(c, shot_data(base), shot_data(nearly), **kw) == []
    strict = fp.FingerprintOptions(screenshot_hash="perceptual", screenshot_threshold=0)
    kw["options"] = strict
    assert changes(c, shot_data(base), shot_data(nearly), **kw) == ["dhash"]


def test_screenshot_perceptual_sees_changed_content() -> None:
    c = ScreenshotCollector()
    base, other = page_png("hello world"), page_png("goodbye, all")
    kw = {"read_before": reader(base), "read_after": reader(other), "options": PERCEPTUAL}
    assert changes(c, shot_data(base), shot_data(other), **kw) == ["dhash"]


def test_screenshot_perceptual_without_the_image_falls_back_to_exact() -> None:
    c = ScreenshotCollector()
    png = page_png("x")
    assert c.fingerprint(shot_data(png), PERCEPTUAL, no_artifact).kind == "screenshot/exact"
    assert c.fingerprint(shot_data(png), PERCEPTUAL, reader(b"not a png")).kind == (
        "screenshot/exact"
    )
    assert c.fingerprint(shot_data(png), PERCEPTUAL, reader(png)).kind == "screenshot/perceptual"


def test_screenshot_perceptual_without_pillow_compares_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fp, "perceptual_available", lambda: False)
    png = page_png("x")
    shot = ScreenshotCollector().fingerprint(shot_data(png), PERCEPTUAL, reader(png))
    assert shot.kind == "screenshot/exact"


def test_dhash_survives_reencoding() -> None:
    png = page_png("hello")
    jpeg = page_png("hello", fmt="JPEG")
    assert fp.hamming(fp.dhash(png), fp.dhash(jpeg)) <= fp.FingerprintOptions().screenshot_threshold
    assert len(fp.dhash(png)) == fp.DHASH_BITS // 4


# default, diff -------------------------------------------------------------------------


class Plain(Collector):
    name = "plain"
    options_schema = None  # type: ignore[assignment]
    result_schema = None  # type: ignore[assignment]

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        raise NotImplementedError


def test_the_default_fingerprint_digests_all_data_in_any_key_order() -> None:
    c = Plain()
    a = c.fingerprint({"x": 1, "y": [1, 2]}, EXACT, no_artifact)
    assert a == c.fingerprint({"y": [1, 2], "x": 1}, EXACT, no_artifact)
    assert c.changed_parts(a, c.fingerprint({"x": 2, "y": [1, 2]}, EXACT, no_artifact), EXACT) == [
        "data_sha256"
    ]
    assert fp.Fingerprint.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_a_diff_entry_is_compact() -> None:
    before = [f"192.0.2.{i}" for i in range(100)]
    after = before[1:] + ["198.51.100.1"]
    entry = fp.diff_entry("dns", "A", before, after)
    assert entry["added"] == ["198.51.100.1"]
    assert entry["removed"] == ["192.0.2.0"]
    assert len(entry["before"]) == fp.MAX_DIFF_ITEMS + 1
    assert entry["before"][-1] == "… 80 more"
    long = fp.diff_entry("http", "final_url", "x" * 5000, "y")
    assert len(long["before"]) == fp.MAX_VALUE_CHARS
    assert long["before"].endswith("…")
    assert len(json.dumps(entry)) < 2000
    assert "added" not in long


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, fp.FingerprintOptions()),
        ({}, fp.FingerprintOptions()),
        (
            {"screenshot_hash": "perceptual", "screenshot_threshold": 3, "http_headers": ["ETag"]},
            fp.FingerprintOptions("perceptual", 3, ("etag",)),
        ),
    ],
)
def test_options_from_a_schedule(given: dict[str, Any] | None, expected: Any) -> None:
    assert fp.FingerprintOptions.from_mapping(given) == expected
