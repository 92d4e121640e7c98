"""Deployment files: compose, Dockerfiles, Prometheus rules, dashboard, requirements.

No Docker engine runs here, so images are not built: the files are validated with
the real tools where they exist (docker-compose, promtool) and checked against
the code they describe (metric names, copied paths, pins).
"""
import json
import re
import subprocess

import pytest
import yaml

from tests.procs import ROOT
from tests.system import need

PROM = ROOT / "deploy" / "prometheus"
CODE_DIRS = ["gateway", "llava_runtime", "llava_supervisor"]


def run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- compose


def test_compose_file_is_valid_for_docker_compose():
    result = run(need("docker-compose"), "-f", "docker-compose.yml", "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"proxy", "gateway", "model", "redis", "prometheus"}
    assert "ports" not in services["model"] and "ports" not in services["gateway"]  # internal only
    assert services["gateway"]["depends_on"]["model"]["condition"] == "service_healthy"
    assert services["model"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["gateway"]["environment"]["MODEL_URL"] == "http://model:8081"
    assert services["gateway"]["environment"]["CACHE_URL"].startswith("redis://redis:")
    assert services["model"]["restart"] == services["gateway"]["restart"] == "unless-stopped"


class _Reset:
    pass


def _load_with_reset(path):
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!reset", lambda _loader, _node: _Reset())
    return yaml.load(path.read_text(), Loader=loader)


def test_cpu_override_runs_the_demo_model_without_a_gpu():
    override = _load_with_reset(ROOT / "docker-compose.cpu.yml")["services"]["model"]
    assert isinstance(override["deploy"], _Reset)  # drops the GPU reservation
    assert override["environment"] == {"MODEL_PATH": "demo", "DEVICE": "cpu"}
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(_load_with_reset(ROOT / "docker-compose.cpu.yml")["services"]) <= set(base["services"])


# ---------------------------------------------------------------- Dockerfiles


def dockerfile(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", ["Dockerfile.gateway", "Dockerfile.model"])
def test_dockerfiles_are_pinned_non_root_and_health_checked(name):
    lines = dockerfile(name)
    base = next(line for line in lines if line.startswith("FROM "))
    assert re.search(r":\d[\w.-]*$", base), f"base image tag must be pinned: {base}"
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] != "USER root"
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    ignore = (ROOT / ".dockerignore").read_text()
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source.rstrip("/")).exists(), f"{name} copies a missing {source}"
                assert f"!{source.rstrip('/')}" in ignore or source.startswith("requirements"), \
                    f".dockerignore leaves {source} out of the build context"
            # dependencies are installed before the code is copied (cache-friendly layers)
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    first_code = min(i for i, line in enumerate(lines) if line.startswith("COPY ") and "requirements" not in line)
    assert installs and max(installs) < first_code


def test_model_image_installs_torch_in_its_own_layer_and_keeps_weights_on_a_volume():
    lines = dockerfile("Dockerfile.model")
    installs = [line for line in lines if "pip install" in line]
    assert "torch==" in installs[0] or "^torch==" in installs[0]
    assert any(line.startswith("VOLUME") and "huggingface" in line for line in lines)
    assert any("supervisor.py" in line for line in lines if line.startswith("ENTRYPOINT"))
    assert "--start-period=30m" in " ".join(lines)


def test_gateway_image_has_no_model_dependencies():
    assert "requirements-gateway.txt" in " ".join(dockerfile("Dockerfile.gateway"))
    gateway = (ROOT / "requirements-gateway.txt").read_text()
    assert "torch" not in gateway and "transformers" not in gateway


# ---------------------------------------------------------------- requirements


def pins(name: str) -> dict:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r"):
            continue
        package, _, version = line.partition("==")
        assert version, f"{name}: {line!r} is not pinned with =="
        found[package.lower()] = version
    return found


def test_requirements_are_pinned_consistently_and_without_torchvision():
    files = ["requirements-gateway.txt", "requirements-model.txt", "requirements-dev.txt"]
    seen = {}
    for name in files:
        for package, version in pins(name).items():
            assert package != "torchvision"
            assert seen.setdefault(package, version) == version, f"{package} pinned twice with different versions"
    assert pins("requirements-model.txt")["torch"] == "2.13.0"


# ---------------------------------------------------------------- Prometheus


def test_prometheus_config_and_rules_pass_promtool():
    promtool = need("promtool")
    config = run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "6 rules found" in config.stdout + config.stderr


def test_alert_rules_fire_on_the_service_levels():
    result = run(need("promtool"), "test", "rules", str(PROM / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def code_metric_names() -> set:
    names = set()
    for directory in CODE_DIRS:
        for path in (ROOT / directory).glob("*.py"):
            names |= set(re.findall(r'"(llava_[a-z_]+)"', path.read_text()))
    return {re.sub(r"_total$", "", n) for n in names}


def referenced_metrics(text: str) -> set:
    found = set(re.findall(r"\b(llava_[a-z_]+)", text))
    return {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in found}


def test_alerts_and_dashboard_use_metrics_the_code_exports():
    exported = code_metric_names()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "llava-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = (PROM / "alerts.yml").read_text()
    alert_exprs = " ".join(r["expr"] for g in yaml.safe_load(alerts)["groups"] for r in g["rules"])
    for where, text in (("dashboard", exprs), ("alerts", alert_exprs)):
        unknown = referenced_metrics(text) - exported
        assert not unknown, f"{where} uses metrics no code exports: {sorted(unknown)}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("status", "latency", "cache", "batch", "tokens", "gpu", "restarts"):
        assert topic in titles
