"""Flower's tasks page, in Chromium, shows the task of a job run by a real worker."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import pytest

from collectors.browser import Browsers
from tests.conftest import wait_for
from tests.integration.test_flower import running_flower

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("COLLECTQ_CHROMIUM_PATH", "/usr/bin/chromium")
USER, PASSWORD = "ops", "a-flower-password"


def _metrics(base: str) -> str:
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:  # open, no auth
            return str(resp.read().decode())
    except OSError:
        return ""


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}")
def test_flower_tasks_page_shows_the_task_of_a_job(
    make_app, start_worker, service_env, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    worker = start_worker(queues="collect.noop", concurrency=1)
    auth = {"COLLECTQ_FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    with running_flower(service_env, tmp_path / "flower.log", **auth) as (base, _):
        # Flower knows tasks only from the events it receives: wait until the worker's
        # heartbeats reach it (its own /metrics), then run the job.
        wait_for(
            lambda: re.search(
                r'^flower_worker_online\{worker="[^"]+"\} 1\.0$', _metrics(base), re.M
            ),
            timeout=20,
            interval=0.3,
        )
        client = make_app().test_client()
        resp = client.post("/v1/jobs", json={"target": "http://127.0.0.1/", "collectors": ["noop"]})
        assert resp.status_code == 202, resp.json
        job_id = resp.json["id"]
        assert client.get(f"/v1/jobs/{job_id}?wait=20").json["status"] == "succeeded"

        with sync_playwright() as pw:
            browser = pw.chromium.launch(**Browsers(CHROMIUM).launch_options())
            try:
                page = browser.new_context(
                    http_credentials={"username": USER, "password": PASSWORD}
                ).new_page()
                page.goto(f"{base}/tasks", timeout=20_000)
                # the table is filled by the page's script from /tasks/datatable
                row = page.locator("table#tasks-table tbody tr", has_text=job_id)
                expect(row).to_have_count(1, timeout=20_000)
                text = row.inner_text()
            finally:
                browser.close()
    assert "collect.noop" in text
    assert "SUCCESS" in text
    assert worker.proc.poll() is None
