"""`collectq collect`: all four collectors in-process, no servers, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.tlsserver import certificates, tls_server

pytestmark = pytest.mark.collectors

CHROMIUM = os.environ.get("COLLECTQ_CHROMIUM_PATH", "/usr/bin/chromium")
CA, CERTS = certificates()


def collectq(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "collect", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}")
def test_collect_runs_all_four_and_writes_the_png(httpserver, dns_port, tmp_path: Path) -> None:
    httpserver.expect_request("/").respond_with_data(
        "<title>CLI</title><body style='background:#ff8800'>", content_type="text/html"
    )
    shot = tmp_path / "out" / "shot.png"
    with tls_server(CERTS["valid"]) as tls:
        done = collectq(
            f"http://localhost:{httpserver.port}/",
            "-c", "http,dns,tls,screenshot",
            "-o", "dns.nameserver=127.0.0.1", "-o", f"dns.port={dns_port}",
            "-o", f"tls.port={tls.port}", "-o", f"tls.ca_pem={CA.cert_pem.bytes().decode()}",
            "-o", 'screenshot.viewport={"width": 300, "height": 200}',
            "--screenshot", str(shot),
            "--artifact", f"http.body={tmp_path / 'page.html'}",
            COLLECTQ_ENV="dev",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loopback allowed" in done.stderr  # the dev profile says so
    envelope = json.loads(done.stdout)
    assert envelope["status"] == "succeeded"
    assert {n: r["status"] for n, r in envelope["results"].items()} == dict.fromkeys(
        ["http", "dns", "tls", "screenshot"], "succeeded"
    )
    assert envelope["results"]["screenshot"]["artifacts"][0]["path"] == str(shot)
    image = Image.open(shot).convert("RGB")
    assert image.size == (300, 200)
    assert image.getpixel((150, 100)) == (0xFF, 0x88, 0x00)
    assert (tmp_path / "page.html").read_text().startswith("<title>CLI</title>")


def test_collect_exits_1_when_the_guard_blocks(httpserver) -> None:
    done = collectq(f"http://127.0.0.1:{httpserver.port}/", "-c", "http", COLLECTQ_ENV="test")
    assert done.returncode == 1
    result = json.loads(done.stdout)["results"]["http"]
    assert (result["status"], result["error"]["type"]) == ("failed", "blocked_address")
    assert httpserver.log == []
