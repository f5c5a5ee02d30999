"""The nginx gateway (deploy/nginx) for real: Debian's nginx with a copy of the shipped
config, only its ports, upstream servers, and file paths rewritten (`gateway_config`), in
front of two real API processes (gunicorn) on the real Redis and RabbitMQ. Loopback only.

Shown: requests spread over both replicas; X-Request-ID injected, passed through, or
replaced when invalid; the API sees the client's address (X-Forwarded-For, ProxyFix with
one trusted hop), not one the client claims; a body over the limit and the edge rate limit
answered by nginx as problem+json; every status nginx answers itself is problem+json;
gzip on JSON; an event stream's first events before it ends; the access log is JSON with
the request id and the replica; TLS termination and the redirect to HTTPS; and, last, one
replica killed: a GET goes to the other one, the dead one is then skipped, and a POST is
never sent to a second replica (a 502 problem).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from limits import parse_many

from app.options import Option, Options
from tests.apiprocess import RunningApi, running_api, stop_process
from tests.conftest import REDIS_URL, ROOT, free_port, wait_for
from tests.metricsenv import deployment_env

pytestmark = pytest.mark.integration

CONF = ROOT / "deploy" / "nginx"
PROBLEM = "application/problem+json"
# The test's own fail_timeout: a replica marked down comes back within the test's seconds.
FAIL_TIMEOUT = 1.0


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def gateway_config(
    dest: Path, upstreams: list[int], *, http_port: int, tls_port: int | None = None
) -> Path:
    """Copy deploy/nginx into `dest`/conf with loopback ports, the given API ports as the
    upstream servers (the shipped parameters, fail_timeout shortened), and every file path
    under `dest`; each rewrite must apply, or the shipped config changed under the test."""
    conf = dest / "conf"
    shutil.copytree(CONF, conf)

    def rewrite(name: str, old: str, new: str) -> None:
        path = conf / name
        text = path.read_text()
        assert old in text, f"{name} has no {old!r}"
        path.write_text(text.replace(old, new))

    for path in conf.glob("*.conf"):
        # the config writes only under /tmp/ (pid, temp files): here under `dest`
        path.write_text(path.read_text().replace("/tmp/", f"{dest}/"))  # noqa: S108
    upstream = (conf / "upstream.conf").read_text()
    line = re.search(r"^\s*server api:8000 (.*);$", upstream, re.M)
    assert line, "upstream.conf has no `server api:8000 …;`"
    params = re.sub(r"fail_timeout=\w+", f"fail_timeout={FAIL_TIMEOUT:g}s", line.group(1))
    servers = "\n".join(f"    server 127.0.0.1:{port} {params};" for port in upstreams)
    rewrite("upstream.conf", line.group(0), servers)
    rewrite("nginx.conf", "listen 8080;", f"listen 127.0.0.1:{http_port};")
    rewrite("nginx-tls.conf", "listen 8080;", f"listen 127.0.0.1:{http_port};")
    rewrite("nginx-tls.conf", "listen 8443 ssl", f"listen 127.0.0.1:{tls_port or 0} ssl")
    rewrite("tls.conf", "/etc/nginx/certs/", f"{dest}/certs/")
    rewrite("http.conf", "/dev/stdout", f"{dest}/access.log")
    # Test-only routes to statuses nginx makes on its own (upstream timeout, …): their
    # answers must be the shipped problem pages too.
    extra = "".join(
        f"location = /__gateway_test/{code} {{ return {code}; }}\n" for code in (500, 503, 504, 414)
    )
    # …and one answered after the rate limit's phase (a `return` comes before it).
    extra += "location = /__gateway_test/limited { stub_status; }\n"
    rewrite("routes.conf", "location / {", extra + "location / {")
    return conf


@dataclass
class Nginx:
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    def access_log(self) -> list[dict[str, Any]]:
        path = self.prefix / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def logged(self, request_id: str) -> dict[str, Any]:
        """The access-log entry of a request (written just after its answer: poll)."""

        def find() -> dict[str, Any] | None:
            hits = [e for e in self.access_log() if e["request_id"] == request_id]
            return hits[0] if hits else None

        entry: dict[str, Any] = wait_for(find, timeout=5, interval=0.02)
        return entry


def start_nginx(prefix: Path, conf: Path, entry: str, port: int) -> Nginx:
    command = ["nginx", "-e", "stderr", "-c", str(conf / entry), "-p", str(prefix)]
    with (prefix / f"{entry}.err").open("wb") as err:
        proc = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=err
        )

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {(prefix / f'{entry}.err').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=10, interval=0.02)
    return Nginx(prefix, port, proc)


@dataclass
class Gateway:
    nginx: Nginx
    apis: list[RunningApi]
    token: str

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> Answer:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.nginx.port, timeout=10, source_address=(source, 0)
        )
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        try:
            conn.request(
                method,
                path,
                body=data,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    **(headers or {}),
                },
            )
            resp = conn.getresponse()
            return Answer(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def api_log(self, index: int) -> list[dict[str, Any]]:
        """The JSON lines of one replica's log."""
        out = []
        for line in self.apis[index].log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def served_by(self, request_id: str) -> list[int]:
        """Which replicas logged an access line for this request id."""
        return [
            i
            for i in range(len(self.apis))
            if any(
                e.get("request_id") == request_id and e.get("logger") == "collectq.access"
                for e in self.api_log(i)
            )
        ]


def _rid() -> str:
    return f"gw-{uuid.uuid4().hex[:12]}"


def _problem(answer: Answer, status: int) -> dict[str, Any]:
    """The answer is a problem+json of `status`, never an HTML page."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["Content-Type"] == PROBLEM, answer.headers["Content-Type"]
    doc: dict[str, Any] = answer.json()
    assert doc["status"] == status
    assert doc["type"].startswith("https://collectq.dev/problems/")
    assert doc["request_id"] == answer.headers["X-Request-ID"]
    return doc


@pytest.fixture(scope="module")
def gateway(vhost: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (tests/services.sh installs Debian's nginx)")
    env = {
        **deployment_env(vhost),
        "COLLECTQ_TRUSTED_PROXIES": "1",  # as deploy/nginx/README.md says
        "COLLECTQ_LOG_JSON": "true",
        "COLLECTQ_EVENT_KEEPALIVE": "1",
    }
    # nginx's workers run as nobody: their temp paths must be reachable (pytest's are 0700)
    prefix = Path(tempfile.mkdtemp(prefix="cq-gateway-"))
    prefix.chmod(0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, prefix, ignore_errors=True)
        stack.callback(_drop_keys, env["COLLECTQ_REDIS_PREFIX"])
        apis = [
            stack.enter_context(running_api(env, tmp_path_factory.mktemp(f"api{i}")))
            for i in range(2)
        ]
        port = free_port()
        conf = gateway_config(prefix, [a.port for a in apis], http_port=port)
        for api in apis:
            _wait_ready(api)
        nginx = start_nginx(prefix, conf, "nginx.conf", port)
        stack.callback(stop_process, nginx.proc, grace=10)
        yield Gateway(nginx, apis, apis[0].token)


def _wait_ready(api: RunningApi) -> None:
    """`api.wait_ready`, three times as patient: two gunicorns boot at once, on shared CPUs."""
    for attempt in range(3):
        try:
            api.wait_ready()
            return
        except AssertionError:
            if api.proc.poll() is not None or attempt == 2:
                raise


def _drop_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def _option(name: str) -> Option:
    (opt,) = [f.metadata["option"] for f in fields(Options) if f.name == name]
    return opt


def _directive(name: str, text: str) -> list[str]:
    return re.findall(rf"^\s*{name} ([^;]+);", text, re.M)


def test_config_agrees_with_the_api_settings() -> None:
    """Body limit, read timeouts, edge rate and problem pages in step with app/options.py."""
    http_conf = (CONF / "http.conf").read_text()
    routes = (CONF / "routes.conf").read_text()
    problems = (CONF / "problems.conf").read_text()

    (body,) = _directive("client_max_body_size", http_conf)
    assert body == "1m"
    assert _option("max_body_bytes").default == 1024 * 1024
    assert "(1 MiB)" in problems  # the 413 page says it

    # long-polls, submits that wait (POST ?wait=, sent on by @api_no_retry) and event
    # streams: the read timeout outlasts the longest the API may be silent (?wait= up to
    # MAX_WAIT's maximum; keep-alive comments every EVENT_KEEPALIVE)
    longest = max(_option("max_wait").max or 0, _option("event_keepalive").max or 0)
    slow = [int(t.rstrip("s")) for t in _directive("proxy_read_timeout", routes)]
    assert len(slow) == 3
    assert min(slow) > longest
    assert re.search(r"location @api_no_retry \{[^}]*proxy_read_timeout", routes)

    # the edge rate is above the API's per-client defaults together (a flood guard only)
    (rate,) = re.findall(r"rate=(\d+)r/s", http_conf)
    per_minute = sum(
        limit.amount * 60 / limit.get_expiry()
        for name in ("rate_limit_submit", "rate_limit_read", "rate_limit_admin")
        for limit in parse_many(_option(name).default)
    )
    assert int(rate) * 60 > per_minute

    # every status errors.conf maps has its page, a problem of that status
    mapped = re.findall(r"=(\d+) @problem_(\d+);", (CONF / "errors.conf").read_text())
    assert mapped
    for status, page in mapped:
        assert status == page
        found = re.search(
            rf"location @problem_{page} {{.*?return {page} '([^']+)';", problems, re.S
        )
        assert found, page
        doc = json.loads(
            found.group(1).replace("$cq_instance", "/x").replace("$cq_request_id", "r")
        )
        assert doc["status"] == int(page)


def test_requests_spread_over_both_replicas(gateway: Gateway) -> None:
    ids = [_rid() for _ in range(8)]
    for rid in ids:
        assert gateway.request("GET", "/health", headers={"X-Request-ID": rid}).status == 200
    replicas = {f"127.0.0.1:{api.port}" for api in gateway.apis}
    used = [gateway.nginx.logged(rid)["upstream_addr"] for rid in ids]
    assert set(used) == replicas, used
    served = [gateway.served_by(rid) for rid in ids]
    assert all(len(s) == 1 for s in served), served  # each request once, by one replica
    assert {s[0] for s in served} == {0, 1}


def test_request_id_injected_passed_through_or_replaced(gateway: Gateway) -> None:
    injected = gateway.request("GET", "/v1/collectors")
    assert injected.status == 200
    rid = injected.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid  # nginx's $request_id
    assert gateway.nginx.logged(rid)["status"] == 200
    assert len(gateway.served_by(rid)) == 1  # the API logged nginx's id

    mine = _rid()
    assert (
        gateway.request("GET", "/health", headers={"X-Request-ID": mine}).headers["X-Request-ID"]
        == mine
    )

    bad = gateway.request("GET", "/health", headers={"X-Request-ID": 'x" y'})
    assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["X-Request-ID"])


def test_api_sees_the_clients_address_not_a_claimed_one(gateway: Gateway) -> None:
    rid = _rid()
    answer = gateway.request(
        "GET",
        "/v1/collectors",
        headers={"X-Request-ID": rid, "X-Forwarded-For": "198.51.100.7"},
        source="127.0.0.2",  # nginx itself reaches the API from 127.0.0.1
    )
    assert answer.status == 200
    assert gateway.nginx.logged(rid)["client"] == "127.0.0.2"
    (replica,) = gateway.served_by(rid)
    (line,) = [
        e
        for e in gateway.api_log(replica)
        if e.get("request_id") == rid and e.get("logger") == "collectq.access"
    ]
    assert line["client"] == "127.0.0.2", line


def test_body_over_the_limit_is_413_problem_from_the_gateway(gateway: Gateway) -> None:
    rid = _rid()
    answer = gateway.request(
        "POST", "/v1/jobs", body=b"x" * (1024 * 1024 + 1), headers={"X-Request-ID": rid}
    )
    assert _problem(answer, 413)["request_id"] == rid
    assert gateway.nginx.logged(rid)["upstream_addr"] == ""  # never reached an API
    assert gateway.served_by(rid) == []


def test_edge_rate_limit_is_429_problem_with_retry_after(gateway: Gateway) -> None:
    # its own client address, so its bucket is no other test's
    conn = http.client.HTTPConnection(
        "127.0.0.1", gateway.nginx.port, timeout=10, source_address=("127.0.0.3", 0)
    )
    try:
        for _ in range(400):
            conn.request("GET", "/__gateway_test/limited")
            resp = conn.getresponse()
            answer = Answer(resp.status, resp.headers, resp.read())
            if answer.status != 200:
                break
    finally:
        conn.close()
    _problem(answer, 429)
    assert answer.headers["Retry-After"] == "1"


@pytest.mark.parametrize("code", [500, 503, 504, 414])
def test_statuses_nginx_makes_are_problems(gateway: Gateway, code: int) -> None:
    _problem(gateway.request("GET", f"/__gateway_test/{code}"), code)


@pytest.mark.parametrize("path", ["/metrics", "/healthcheck", "/flower/", "/v2/jobs"])
def test_unrouted_paths_are_404_problems(gateway: Gateway, path: str) -> None:
    rid = _rid()
    doc = _problem(gateway.request("GET", path, headers={"X-Request-ID": rid}), 404)
    assert doc["instance"] == path
    assert gateway.served_by(rid) == []


def test_json_answer_is_gzipped(gateway: Gateway) -> None:
    answer = gateway.request("GET", "/v1/collectors", headers={"Accept-Encoding": "gzip"})
    assert answer.status == 200
    assert answer.headers["Content-Encoding"] == "gzip"
    assert isinstance(json.loads(gzip.decompress(answer.body)), dict | list)


def test_legacy_path_reaches_its_alias(gateway: Gateway) -> None:
    # POST /collect (GET /containers/status is routed alike; it asks the workers: slower)
    body = {"target": "http://127.0.0.1/", "collectors": ["noop"]}
    answer = gateway.request("POST", "/collect", body=body)
    assert answer.status == 202, answer.body[:300]
    assert answer.headers["Deprecation"] == "true"
    assert "successor-version" in answer.headers["Link"]


def test_event_stream_is_passed_on_unbuffered(gateway: Gateway) -> None:
    submitted = gateway.request(
        "POST", "/v1/jobs", body={"target": "http://127.0.0.1/", "collectors": ["noop"]}
    )
    assert submitted.status == 202, submitted.body[:300]
    job_id = submitted.json()["id"]  # no worker: it stays queued, its stream stays open
    conn = http.client.HTTPConnection("127.0.0.1", gateway.nginx.port, timeout=5)
    try:
        started = time.monotonic()
        conn.request(
            "GET",
            f"/v1/jobs/{job_id}/events",
            headers={
                "Authorization": f"Bearer {gateway.token}",
                "Accept": "text/event-stream",
                "Accept-Encoding": "gzip",
            },
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Content-Encoding"] is None
        line = b""
        while not line.startswith(b"event: state"):
            line = resp.readline()  # a timeout here: the stream was held back
        data = resp.readline()
        assert data.startswith(b"data:"), data
        assert json.loads(data[5:])["status"] == "queued"
        keepalive = resp.readline()
        while keepalive.strip() == b"" or keepalive.startswith(b"data:"):
            keepalive = resp.readline()
        assert keepalive.startswith(b":"), keepalive  # EVENT_KEEPALIVE=1: a comment, live
        assert time.monotonic() - started < 4
        assert not resp.isclosed()
    finally:
        conn.close()


def test_access_log_is_json_with_request_id_and_replica(gateway: Gateway) -> None:
    rid = _rid()
    gateway.request("GET", "/health", headers={"X-Request-ID": rid, "User-Agent": 'a"b'})
    entry = gateway.nginx.logged(rid)
    assert entry["logger"] == "nginx.access"
    assert entry["method"] == "GET"
    assert entry["path"] == "/health"
    assert entry["status"] == 200
    assert entry["user_agent"] == 'a"b'  # escaped, the line still parsed
    assert entry["upstream_addr"] in {f"127.0.0.1:{api.port}" for api in gateway.apis}


def test_tls_termination_and_redirect(gateway: Gateway) -> None:
    prefix = gateway.nginx.prefix / "tls"
    (prefix / "certs").mkdir(parents=True)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(prefix / "certs" / "tls.crt"))
    for extra in cert.cert_chain_pems[1:]:
        with (prefix / "certs" / "tls.crt").open("ab") as f:
            f.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(prefix / "certs" / "tls.key"))
    http_port, tls_port = free_port(), free_port()
    conf = gateway_config(
        prefix, [api.port for api in gateway.apis], http_port=http_port, tls_port=tls_port
    )
    nginx = start_nginx(prefix, conf, "nginx-tls.conf", tls_port)
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        conn = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=5, context=context)
        try:
            conn.request("GET", "/health", headers={"X-Request-ID": "tls-1"})
            resp = conn.getresponse()
            assert resp.status == 200
            assert json.loads(resp.read())
            assert resp.headers["X-Request-ID"] == "tls-1"
        finally:
            conn.close()
        entry = nginx.logged("tls-1")
        assert entry["scheme"] == "https"

        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        try:
            plain.request("POST", "/v1/jobs", body=b"{}")
            resp = plain.getresponse()
            resp.read()
            assert resp.status == 308
            assert resp.headers["Location"] == "https://127.0.0.1/v1/jobs"
        finally:
            plain.close()

        wrong = http.client.HTTPConnection("127.0.0.1", tls_port, timeout=5)
        try:  # plain HTTP to the TLS port: nginx's 497, a 400 problem
            wrong.request("GET", "/health")
            resp = wrong.getresponse()
            _problem(Answer(resp.status, resp.headers, resp.read()), 400)
        finally:
            wrong.close()
    finally:
        stop_process(nginx.proc, grace=10)


def _kill_replica(api: RunningApi) -> None:
    """SIGKILL the replica's gunicorn master and its workers: a crashed replica."""
    children = Path(f"/proc/{api.proc.pid}/task/{api.proc.pid}/children").read_text().split()
    for pid in [api.proc.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    api.proc.wait()

    def refused() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", api.port)) != 0

    wait_for(refused, timeout=5)


def test_zz_replica_killed_get_retried_post_never(gateway: Gateway) -> None:
    """Last in the module: it kills a replica."""
    alive, dead = (f"127.0.0.1:{api.port}" for api in gateway.apis)
    _kill_replica(gateway.apis[1])

    # A GET that meets the dead replica is passed to the other one.
    retried = None
    for _ in range(4):
        rid = _rid()
        assert gateway.request("GET", "/health", headers={"X-Request-ID": rid}).status == 200
        entry = gateway.nginx.logged(rid)
        if entry["upstream_addr"] == f"{dead}, {alive}":
            retried = entry
            break
    assert retried is not None, "no GET met the dead replica"
    assert retried["upstream_status"] == "502, 200"
    # Health-aware: the dead replica is now skipped (for fail_timeout), no second try.
    for _ in range(4):
        rid = _rid()
        assert gateway.request("GET", "/health", headers={"X-Request-ID": rid}).status == 200
        assert gateway.nginx.logged(rid)["upstream_addr"] == alive

    # After fail_timeout it is tried again: a POST that meets it is not passed on.
    # (nginx counts it in whole seconds: up to fail_timeout + 1 s), then eased back in.
    body = {"target": "http://127.0.0.1/", "collectors": ["noop"]}
    failed = None
    deadline = time.monotonic() + FAIL_TIMEOUT + 4
    time.sleep(FAIL_TIMEOUT)
    while failed is None and time.monotonic() < deadline:
        rid = _rid()
        answer = gateway.request("POST", "/v1/jobs", body=body, headers={"X-Request-ID": rid})
        if answer.status == 202:
            time.sleep(0.1)
        else:
            failed = (rid, answer)
    assert failed is not None, "no POST met the dead replica"
    rid, answer = failed
    assert _problem(answer, 502)["request_id"] == rid
    assert gateway.nginx.logged(rid)["upstream_addr"] == dead  # one replica tried, only
    assert gateway.served_by(rid) == []  # the live replica never saw it
