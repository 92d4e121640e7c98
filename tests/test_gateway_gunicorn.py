"""The gateway as it runs in production: gunicorn, two workers, real sockets.
Metrics summed across workers, clean under promtool, 413 answered (not reset),
the JDK's h2c upgrade header ignored, bad settings refused at start."""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.gateway_support import ANALYZE, FakeUpstream, analyze, jpeg
from tests.procs import ROOT, Proc, child_env, free_port, python
from tests.system import need

pytestmark = pytest.mark.slow
MAX_UPLOAD = 1024 * 1024


def gunicorn(port: int, model_url: str, metrics_dir: str, **env) -> Proc:
    return Proc(python("-m", "gunicorn", "-c", "python:gateway.gunicorn_conf", "gateway.wsgi:app"),
                env={"GATEWAY_PORT": str(port), "MODEL_URL": model_url, "GATEWAY_WORKERS": "2",
                     "GATEWAY_THREADS": "8", "MAX_UPSTREAM_IN_FLIGHT": "2", "ADMISSION_QUEUE": "2",
                     "MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                     "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "UPSTREAM_HEALTH_INTERVAL_SECONDS": "0.5",
                     # one connection at a time per worker: concurrent requests must spread over both
                     "GUNICORN_CMD_ARGS": "--worker-connections 1", **env})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    fake = FakeUpstream()
    metrics_dir = tmp_path_factory.mktemp("metrics")
    (metrics_dir / "counter_999999.db").write_bytes(b"stale file of an earlier run")
    port = free_port()
    proc = gunicorn(port, fake.url, str(metrics_dir))
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for(url + "/health/live", timeout=60)
        yield url, fake, metrics_dir, proc
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]
        fake.close()


def sample(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + (labels and "{") ) and (not labels or line.split("}")[0][len(name) + 1:] == labels):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_are_summed_across_workers(served):
    url, fake, metrics_dir, _ = served
    fake.delay_s = 0.3
    with ThreadPoolExecutor(6) as pool:
        first = [f.result().json()["status"] for f in
                 [pool.submit(analyze, url, jpeg(), f"spread {i}") for i in range(6)]]
    fake.delay_s = 0.0
    repeats = [analyze(url, jpeg(), "spread 0").json()["status"] for _ in range(4)]
    refused = analyze(url, b"not an image").status_code
    statuses = first + repeats
    expected_success, expected_cached = statuses.count("SUCCESS"), statuses.count("CACHED")
    assert first == ["SUCCESS"] * 6 and expected_success + expected_cached == 10 and refused == 415

    per_pid = {}
    for path in glob.glob(str(metrics_dir / "counter_*.db")):
        from prometheus_client.mmap_dict import MmapedDict
        total = sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(path)
                    if json.loads(key)[0] == "llava_requests")
        per_pid[os.path.basename(path)] = total
    assert "counter_999999.db" not in per_pid, "the multiprocess directory must be emptied at start"
    assert sum(1 for total in per_pid.values() if total > 0) == 2, f"both workers must have served: {per_pid}"

    endpoint = f'endpoint="{ANALYZE}"'
    for _ in range(6):  # each scrape may be answered by either worker: all must agree
        text = requests.get(url + "/metrics", timeout=10).text
        assert sample(text, "llava_requests_total", f'{endpoint},status="SUCCESS"') == expected_success
        assert sample(text, "llava_requests_total", f'{endpoint},status="CACHED"') == expected_cached
        assert sample(text, "llava_requests_total", f'{endpoint},status="VALIDATION_ERROR"') == 1
        assert sample(text, "llava_response_time_seconds_count", endpoint) == 11
        assert sample(text, "llava_cache_hits_total") == expected_cached
        assert sample(text, "llava_in_flight_requests") == 0


def test_metrics_pass_promtool(served):
    promtool = need("promtool", ".ci/run installs Debian's prometheus package")
    url, *_ = served
    analyze(url, jpeg(), "promtool")
    text = requests.get(url + "/metrics", timeout=10).text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("llava_requests_total", "llava_response_time_seconds_bucket", "llava_cache_hits_total",
                 "llava_cache_misses_total", "llava_breaker_state", "llava_in_flight_requests"):
        assert name in text


def test_oversized_upload_gets_a_413_body_not_a_reset(served):
    url, fake, *_ = served
    calls = fake.calls
    big = b"\xff\xd8\xff" + os.urandom(5 * MAX_UPLOAD)
    response = requests.post(url + ANALYZE, files={"image": ("big.jpg", big, "image/jpeg")},
                             data={"prompt": "hi"}, timeout=30)
    assert response.status_code == 413 and response.json()["status"] == "VALIDATION_ERROR"
    assert "limit" in response.json()["result"] and fake.calls == calls


def test_oversized_upload_with_curl_expect_continue(served, tmp_path):
    curl = need("curl")
    url, *_ = served
    photo = tmp_path / "big.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + os.urandom(3 * MAX_UPLOAD))
    done = subprocess.run([curl, "-sS", "-F", f"image=@{photo}", "-F", "prompt=hi", url + ANALYZE],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr  # curl exits 55/56 on a reset connection
    assert json.loads(done.stdout)["status"] == "VALIDATION_ERROR"


def test_jdk_h2c_upgrade_request_is_answered_as_http1(served):
    url, *_ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\n"
                     b"User-Agent: Java-http-client/21\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):  # the gateway closes the connection after answering
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 200") and '"UP"' in reply


def test_bad_setting_stops_the_start_with_exit_3(tmp_path):
    proc = gunicorn(free_port(), "ftp://nowhere", str(tmp_path), GATEWAY_WORKERS="zero")
    code = proc.wait(timeout=30)
    assert code == 3
    assert "MODEL_URL='ftp://nowhere'" in proc.output() and "GATEWAY_WORKERS='zero'" in proc.output()


def test_the_configuration_sets_the_metrics_directory_before_prometheus_client_is_imported(tmp_path):
    """prometheus-client picks its storage once, when first imported: loading the gunicorn
    configuration (in the master, before any worker) must name the directory first."""
    probe = ("import os, sys; import gateway.gunicorn_conf; "
             "print('prometheus_client' in sys.modules, os.environ['PROMETHEUS_MULTIPROC_DIR'])")
    done = subprocess.run(python("-c", probe), capture_output=True, text=True, timeout=60,
                          env=child_env({"TMPDIR": str(tmp_path)}), cwd=ROOT)
    imported, directory = done.stdout.split()
    assert done.returncode == 0 and imported == "False", done.stderr
    assert directory.startswith(str(tmp_path)) and os.path.isdir(directory)
