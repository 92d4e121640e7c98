"""The playground and API docs pages as served (a real gateway on a free port; the
browser's view is tests/test_playground_browser.py), PAGES_ENABLED, and the model's
state at GET /health/model against fake replicas: ready, loading with progress,
starting, restarting, without their URLs."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from flask import Flask

from gateway import model_state, pages
from gateway.openapi import document
from tests.gateway_support import FakeUpstream, Served, gateway, jpeg
from tests.procs import free_port

WEB = Path(pages.WEB)
PAGES = ("/", "/docs")
ASSETS = ("/ui/playground.js", "/ui/playground.css", "/ui/docs.js", "/ui/docs.css", "/ui/favicon.svg",
          "/docs/swagger-ui/swagger-ui.css", "/docs/swagger-ui/swagger-ui-bundle.js")
IDS = ("image", "prompt", "ask", "answer", "status", "model-state")


@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream()
    yield fake
    fake.close()


class Scripts(HTMLParser):
    """Every <script> and what it loads; every src/href."""

    def __init__(self):
        super().__init__()
        self.scripts, self.links, self.ids, self.inline, self._in_script = [], [], set(), [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.add(attrs.get("id"))
        self.links += [attrs[name] for name in ("src", "href") if name in attrs]
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append(attrs.get("src"))
        if any(name.startswith("on") for name in attrs):
            self.inline.append(f"<{tag}> handler attribute")
        if "style" in attrs:
            self.inline.append(f"<{tag}> style attribute")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append("inline <script> body")


def parsed(html: str) -> Scripts:
    parser = Scripts()
    parser.feed(html)
    return parser


def test_the_pages_load_only_files_of_this_origin_under_a_strict_csp(upstream):
    with gateway(upstream.url) as (url, _):
        for path in PAGES:
            response = requests.get(url + path, timeout=5)
            assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            page = parsed(response.text)
            assert page.scripts and all(page.scripts), f"{path}: every script is a file"
            assert not page.inline, f"{path}: {page.inline}"
            for link in page.links:  # relative: this origin, also under a path prefix
                assert not re.match(r"^([a-z]+:|//|/)", link), f"{path} links to {link}"
                assert requests.get(url + "/" + link.removeprefix("./"), timeout=5).status_code == 200, link
        for path in ASSETS:
            response = requests.get(url + path, timeout=5)
            assert response.status_code == 200 and len(response.content) > 100, path
        assert set(IDS) <= parsed(requests.get(url + "/", timeout=5).text).ids


def test_our_scripts_and_styles_name_no_other_host():
    for path in WEB.iterdir():
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, never fetched
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{path.name} names another host"
        if path.suffix == ".js":
            assert "innerHTML" not in text and "eval(" not in text, f"{path.name}: text only, no markup from data"


def test_swagger_ui_is_the_pinned_package_and_only_its_used_files_are_served(upstream):
    version = (Path(pages.SWAGGER_DIST) / "VERSION").read_text().strip()
    pinned = re.search(r"^flask-swagger-ui==(\S+)", (Path(__file__).parent.parent / "requirements-gateway.txt")
                       .read_text(), re.M).group(1)
    assert version == "v" + pinned, "flask-swagger-ui ships the Swagger UI of its own version number"
    with gateway(upstream.url) as (url, _):
        for name in ("VERSION", "LICENSE", "index.template.html", "..%2Fflask_swagger_ui.py"):
            assert requests.get(f"{url}/docs/swagger-ui/{name}", timeout=5).status_code == 404
        assert requests.get(url + "/ui/..%2Fpages.py", timeout=5).status_code == 404


def test_pages_enabled_false_leaves_the_api_alone(upstream):
    with gateway(upstream.url, PAGES_ENABLED="false") as (url, _):
        for path in PAGES + ASSETS:
            response = requests.get(url + path, timeout=5)
            assert response.status_code == 404 and response.json()["status"] == "VALIDATION_ERROR", path
        assert requests.get(url + model_state.PATH, timeout=5).status_code == 200
        answer = requests.post(url + "/api/v1/multimodal/analyze", files={"image": ("a.jpg", jpeg(), "image/jpeg")},
                               data={"prompt": "What?"}, timeout=10)
        assert answer.json()["status"] == "SUCCESS"


def test_with_api_keys_the_pages_open_and_the_api_still_asks_for_a_key(upstream):
    with gateway(upstream.url, API_KEYS="secret-1") as (url, _):
        for path in PAGES + ASSETS + (model_state.PATH,):
            assert requests.get(url + path, timeout=5).status_code == 200, path
        assert requests.get(url + "/api/v1/multimodal/presets", timeout=5).status_code == 401
        assert requests.get(url + "/api/v1/multimodal/presets", headers={"Authorization": "Bearer secret-1"},
                            timeout=5).status_code == 200
        metrics = requests.get(url + "/metrics", timeout=5).text
        assert 'endpoint="/"' not in metrics and "/ui/" not in metrics, "page loads are not API requests"


# --------------------------------------------------------------------- the model's state

def state(url: str) -> dict:
    response = requests.get(url + model_state.PATH, timeout=5)
    assert response.status_code == 200
    return response.json()


class LoadingModel:
    """A model process's /health while it starts, as llava_runtime/loader.Progress reports it."""

    def __init__(self):
        app = Flask("loading-model")
        app.get("/health")(lambda: ({"status": "loading", "model": "llava-demo", "phase": "loading weights",
                                     "progress": {"step": 9, "detail": "/srv/models/llava-v1.6 as bfloat16 on cuda:0",
                                                  "bars": [{"desc": "Loading checkpoint shards", "n": 2,
                                                            "total": 4}]},
                                     "elapsedSeconds": 41.5}, 503))
        self.served = Served(app)
        self.url = self.served.url


def test_model_state_reports_ready_loading_starting_and_restarting_without_urls(upstream, monkeypatch):
    monkeypatch.setattr(model_state, "TTL_S", 0.0)
    loading = LoadingModel()
    try:
        with gateway(upstream.url) as (url, _):
            ready = state(url)
            assert ready["status"] == "UP" and ready["details"]["state"] == "ready"
            assert ready["details"]["model"] == "fake-llava"
            assert ready["details"]["replicas"] == {"ready": 1, "total": 1}

        with gateway(loading.url) as (url, _):
            body = state(url)
            assert body["status"] == "DOWN" and body["details"]["state"] == "loading"
            assert body["details"]["phase"] == "loading weights" and body["details"]["elapsedSeconds"] == 41.5
            assert body["details"]["detail"] == "llava-v1.6 as bfloat16 on cuda:0", "absolute paths shortened"
            assert body["details"]["bars"] == [{"desc": "Loading checkpoint shards", "n": 2, "total": 4}]

        nobody, going = f"http://127.0.0.1:{free_port()}", FakeUpstream()
        with gateway(f"{nobody},{going.url}") as (url, _):
            assert state(url)["details"]["replicas"] == {"ready": 1, "total": 2}
            going.close()  # the ready one goes away: seen ready before, so restarting
            body = state(url)
            assert body["details"]["state"] == "restarting" and body["details"]["reason"] == "not answering"
            assert "127.0.0.1" not in str(body)

        with gateway(nobody) as (url, _):  # never seen ready by this gateway
            assert state(url)["details"] | {"replicas": None} == {
                "state": "starting", "reason": "not answering", "model": None, "phase": None, "detail": None,
                "bars": [], "elapsedSeconds": None, "replicas": None}
    finally:
        loading.served.close()


@pytest.mark.parametrize("detail, shown", [
    ("/root/.cache/llava-service/demo-model", "demo-model"),
    ("/models/llava/ as float32 on cpu", "llava as float32 on cpu"),
    ("llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf"),
    ("1/2 requests done", "1/2 requests done"),
    ("capturing CUDA graphs of the decode step (12 shapes)", "capturing CUDA graphs of the decode step (12 shapes)"),
])
def test_progress_details_keep_no_absolute_path(detail, shown):
    assert model_state._public(detail) == shown


def test_the_document_describes_health_model_and_groups_every_operation():
    paths = document()["paths"]
    assert "ModelHealth" in paths[model_state.PATH]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["$ref"]
    assert all(op["tags"] for operations in paths.values() for op in operations.values())
