"""Issue 17, "defaults", on the deployment side: compose and the Kubernetes manifests
publish only the buffering proxy, keep gunicorn, the model and Redis internal,
put Prometheus on the host's loopback, give Redis a password from a secret, and
lock every container down (read-only root, no capabilities, no privilege
escalation, memory and process limits). No Docker engine or cluster runs here:
the files are checked against each other and the code, and the Redis command is
run for real with the secret file it expects.

Before: compose published the gateway on all interfaces with API_KEYS empty and
Prometheus on 9090 without authentication; Redis had no password; containers kept
every capability and a writable root.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
import redis
import yaml

from gateway.cache import build_cache
from gateway.metrics import Metrics
from gateway.settings import GatewaySettings
from llava_common.settings import SettingsError
from tests.hostile_support import NGINX_CONF, listening
from tests.procs import ROOT, Proc, free_port
from tests.test_deploy import dockerfile
from tests.test_kubernetes import OVERLAYS, container, find, one, render

SECRET = "/run/secrets/redis-password"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def env(service: dict) -> dict:
    """compose's environment with ${VAR:-default} read as its default."""
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in service.get("environment", {}).items()}


def upstream_port() -> int:
    return int(re.search(r"^\s*server gateway:(\d+);", NGINX_CONF.read_text(), re.M).group(1))


def listen_port() -> int:
    return int(re.search(r"^\s*listen (\d+);", NGINX_CONF.read_text(), re.M).group(1))


# --------------------------------------------------------------------- compose

def test_compose_publishes_only_the_proxy_and_prometheus_on_loopback():
    services = compose()
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"proxy", "prometheus"}
    assert published["proxy"] == ["${GATEWAY_PORT:-8080}:" + str(listen_port())]
    assert all(port.startswith("127.0.0.1:") for port in published["prometheus"])
    gateway = services["gateway"]
    assert int(env(gateway)["GATEWAY_PORT"]) == upstream_port()  # nginx finds gunicorn where it listens
    assert set(gateway["networks"]) == {"edge", "backend"} and set(services["proxy"]["networks"]) == {"public", "edge"}
    networks = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["networks"]
    assert networks["edge"] == {"internal": True}
    assert "./deploy/nginx/nginx.conf:/etc/nginx/llava.conf:ro" in services["proxy"]["volumes"]
    scraped = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]
    assert [c["static_configs"][0]["targets"] for c in scraped if c["job_name"] == "gateway"] == [
        [f"gateway:{upstream_port()}"]]


def test_compose_gateway_refuses_to_start_without_keys():
    """The image listens on 0.0.0.0 (Dockerfile.gateway): with compose's defaults
    (API_KEYS empty, ALLOW_ANONYMOUS false) the gateway's settings refuse it."""
    image_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(line for line in dockerfile("Dockerfile.gateway")
                                                            if line.startswith(("ENV", "GATEWAY", "MALLOC",
                                                                                "PROMETHEUS")))))
    assert image_env["GATEWAY_HOST"] == "0.0.0.0" and image_env["MALLOC_ARENA_MAX"] == "2"
    defaults = {**image_env, **env(compose()["gateway"])}
    defaults.pop("CACHE_PASSWORD_FILE")
    with pytest.raises(SettingsError, match="ALLOW_ANONYMOUS"):
        GatewaySettings.from_env(defaults)
    GatewaySettings.from_env({**defaults, "API_KEYS": "k"})


def test_every_compose_container_is_locked_down():
    for name, service in compose().items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["mem_limit"] and service["pids_limit"], name
        assert service.get("user") != "root" and service["restart"] == "unless-stopped", name


def test_compose_redis_takes_its_password_from_the_secret_and_the_gateway_too():
    services = compose()
    assert services["redis"]["secrets"] == ["redis-password"] and services["gateway"]["secrets"] == ["redis-password"]
    assert SECRET in " ".join(services["redis"]["command"]) and "requirepass" in " ".join(services["redis"]["command"])
    assert SECRET in " ".join(services["redis"]["healthcheck"]["test"])
    assert env(services["gateway"])["CACHE_PASSWORD_FILE"] == SECRET
    secrets = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["secrets"]
    assert secrets == {"redis-password": {"file": "./secrets/redis-password"}}
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()


def test_the_redis_command_requires_the_password_for_real(tmp_path):
    """compose's Redis command, run with the secret file moved to a temp path: a client
    without the password is refused, the gateway's cache (CACHE_PASSWORD_FILE) works,
    the health check passes, and an empty secret stops Redis from starting."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (.ci/run installs it with apt-get)")
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret-from-the-file\n")
    port = free_port()
    [sh, flag, script] = compose()["redis"]["command"]
    script = script.replace("$$", "$").replace(SECRET, str(secret)) + f" --port {port} --bind 127.0.0.1"
    server = Proc([sh, flag, script])
    try:
        client = redis.Redis(port=port, socket_timeout=2)
        deadline = time.monotonic() + 10
        while not listening(port):
            assert server.popen.poll() is None and time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            client.ping()
        settings = GatewaySettings.from_env({"CACHE_URL": f"redis://127.0.0.1:{port}/0",
                                             "CACHE_PASSWORD_FILE": str(secret)})
        cache = build_cache(settings, Metrics())
        cache.put("k", {"result": "x"})
        assert cache.get("k") == {"result": "x"}
        check = compose()["redis"]["healthcheck"]["test"][1].replace("$$", "$").replace(SECRET, str(secret))
        assert subprocess.run(["sh", "-c", check.replace("redis-cli", f"redis-cli -p {port}")],
                              timeout=10).returncode == 0
    finally:
        server.stop()
    secret.write_text("")
    empty = Proc([sh, flag, script])
    assert empty.wait(timeout=10) == 1 and "the secret redis-password is empty" in empty.output()


# --------------------------------------------------------------------- Kubernetes

def test_the_kubernetes_proxy_config_is_the_compose_one():
    assert (ROOT / "deploy/kubernetes/base/nginx.conf").read_text() == NGINX_CONF.read_text(), "run make k8s-rules"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_publishes_the_proxy_and_keeps_gunicorn_in_the_pod(overlay):
    docs = render(overlay)
    pod = one(docs, "Deployment", "llava-gateway")["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in pod["containers"]}
    proxy, gateway = by_name["proxy"], container(docs, "llava-gateway")
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"http": listen_port()}
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"gunicorn": upstream_port()}
    assert {"ip": "127.0.0.1", "hostnames": ["gateway"]} in pod["hostAliases"]
    assert one(docs, "Service", "llava-gateway")["spec"]["ports"][0]["targetPort"] == "http"
    policy = one(docs, "NetworkPolicy", "llava-gateway")["spec"]
    assert [port for rule in policy["ingress"] for port in rule["ports"]] == [{"protocol": "TCP", "port": "http"}]
    assert proxy["command"] == compose()["proxy"]["command"]
    [config] = [v for v in pod["volumes"] if v["name"] == "proxy-config"]
    [generated] = [c for c in find(docs, "ConfigMap") if c["metadata"]["name"] == config["configMap"]["name"]]
    assert generated["data"]["nginx.conf"] == NGINX_CONF.read_text()
    for c in (proxy, gateway):
        assert c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_redis_and_the_gateway_share_the_password_secret(overlay):
    docs = render(overlay)
    gateway = container(docs, "llava-gateway")
    [password] = [e for e in gateway["env"] if e["name"] == "CACHE_PASSWORD"]
    ref = password["valueFrom"]["secretKeyRef"]
    assert ref.get("optional") is not True
    redis_pod = one(docs, "Deployment", "llava-redis")["spec"]["template"]["spec"]
    [volume] = [v for v in redis_pod["volumes"] if v["name"] == "password"]
    assert volume["secret"]["secretName"] == ref["name"]
    redis_container = redis_pod["containers"][0]
    assert {m["mountPath"] for m in redis_container["volumeMounts"]} >= {"/run/secrets"}
    assert SECRET.rsplit("/", 1)[1] == ref["key"]
    assert SECRET in " ".join(redis_container["args"])
