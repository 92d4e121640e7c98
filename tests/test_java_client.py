"""The Java example client (clients/java, JDK HttpClient at its default settings,
which offers an h2c upgrade) compiled with javac and run against the demo stack,
with the OpenAI base URL with and without /v1: the multipart analyze API, the
model list and chat completions all answer 200."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.gateway_support import jpeg
from tests.procs import ROOT

pytest_plugins = ["tests.openai_stack"]
pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None,
                    reason="javac/java not installed (JDK 17+; .ci/run installs default-jdk-headless)")
@pytest.mark.parametrize("suffix", ["", "/v1"], ids=["base URL without /v1", "base URL with /v1"])
def test_java_client_calls_both_apis(demo_stack, tmp_path, suffix):
    out = tmp_path / "classes"
    subprocess.run(["javac", "-d", str(out), str(ROOT / "clients/java/LlavaClient.java")], check=True, timeout=120)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(320, 240))
    run = subprocess.run(["java", "-cp", str(out), "LlavaClient", demo_stack.url + suffix, str(photo), "What is this?"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict(line.split(": ", 1) for line in run.stdout.splitlines() if ": " in line)
    assert '"status":"SUCCESS"' in lines["analyze"] and lines["model"] == "llava-demo"
    preset = json.loads(lines["preset"])
    assert preset["status"] in ("SUCCESS", "CACHED") and preset["data"]["verdict"] in ("pass", "fail")
    assert '"object":"chat.completion"' in lines["chat"] and '"finish_reason"' in lines["chat"]
