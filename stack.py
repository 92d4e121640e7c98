"""The whole service in the foreground: supervisor (which runs the model process)
+ gateway (gunicorn). `make demo` runs it on the demo model, `make run` on
MODEL_PATH (default llava-hf/llava-v1.6-vicuna-7b-hf).

    MODEL_PATH=demo python stack.py
    python stack.py --no-supervisor     # start llava_server.py directly instead

Once the gateway reports the model ready it prints a curl example. Ctrl-C or
SIGTERM stops the gateway, then the supervisor (which stops the model gracefully),
each as a process group, with SIGKILL only past a deadline. If either child dies,
the other is stopped and the exit code says so (3 = bad settings). If stack.py itself
is killed, even by SIGKILL, the kernel sends each child SIGTERM (PR_SET_PDEATHSIG), so
they stop as on Ctrl-C and free their ports: nothing is left running.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from llava_common import exit_codes
from llava_common.parent_death import die_with_parent
from llava_common.settings import load_or_exit

ROOT = Path(__file__).resolve().parent
READY_TIMEOUT_S = 1800          # a first `make run` may download 14 GB of weights
GATEWAY_STOP_MARGIN_S = 10      # over gunicorn's graceful timeout (GatewaySettings.graceful_timeout_s)
MODEL_STOP_S = 60               # the supervisor's stop grace and a margin
EXAMPLE_PROMPT = "What's in this picture?"


def main(argv: list[str]) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--no-supervisor", action="store_true", help="run llava_server.py without the supervisor")
    options = args.parse_args(argv)

    env = dict(os.environ)
    if not env.get("MODEL_URL"):
        env["MODEL_URL"] = f"http://127.0.0.1:{env.get('MODEL_PORT') or 8081}"
    from gateway.settings import GatewaySettings
    settings = load_or_exit(GatewaySettings, "stack", env)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    model_cmd = [sys.executable, str(ROOT / ("llava_server.py" if options.no_supervisor else "supervisor.py"))]
    gateway_cmd = [sys.executable, "-m", "gunicorn", "-c", "python:gateway.gunicorn_conf", "gateway.wsgi:app"]
    children = {"model": start(model_cmd, env), "gateway": start(gateway_cmd, env)}
    local = f"http://localhost:{settings.port}"
    print(f"stack: starting the model ({env.get('MODEL_PATH', 'default model')}) and the gateway on {local}; "
          "Ctrl-C stops both", flush=True)

    code = wait_until_ready(children, f"http://127.0.0.1:{settings.port}/health/ready", stop)
    if code is None and not stop.is_set():
        print_example(local, settings)
        while not stop.wait(0.5):
            code = exited(children)
            if code is not None:
                break
    print("stack: stopping", flush=True)
    terminate(children["gateway"], settings.graceful_timeout_s + GATEWAY_STOP_MARGIN_S)
    terminate(children["model"], MODEL_STOP_S)
    print("stack: stopped", flush=True)
    return exit_codes.OK if code is None else code


def start(argv: list[str], env: dict) -> subprocess.Popen:
    # A process group of its own: the terminal's Ctrl-C reaches only this launcher,
    # which then stops each child in order. Should the launcher die first, each child
    # gets SIGTERM, not SIGKILL: the supervisor still stops the model gracefully and
    # gunicorn removes the metrics and cache directories it made.
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=die_with_parent(signal.SIGTERM))


def exited(children: dict) -> int | None:
    for name, child in children.items():
        if child.poll() is not None:
            print(f"stack: the {name} exited with code {child.returncode}; stopping the rest", flush=True)
            return child.returncode or exit_codes.CRASH
    return None


def wait_until_ready(children: dict, ready_url: str, stop: threading.Event) -> int | None:
    deadline, last_note = time.monotonic() + READY_TIMEOUT_S, time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        code = exited(children)
        if code is not None:
            return code
        try:
            if requests.get(ready_url, timeout=2).status_code == 200:
                return None
        except requests.RequestException:
            pass
        if time.monotonic() - last_note > 15:
            print("stack: waiting for the model to load and warm up ...", flush=True)
            last_note = time.monotonic()
        stop.wait(0.3)
    if not stop.is_set():
        print(f"stack: not ready after {READY_TIMEOUT_S} s", flush=True)
        return exit_codes.CRASH
    return None


def print_example(url: str, settings) -> None:
    photo = example_photo()
    auth = ' -H "Authorization: Bearer $API_KEY"' if settings.api_keys else ""
    pages = (f"  playground, in a browser: {url}/   API docs: {url}/docs\n\n" if settings.pages_enabled else "")
    print(f"\nstack: ready.\n\n{pages}  Try (the same again answers CACHED):\n\n"
          f"  curl{auth} -F image=@{photo} -F prompt=\"{EXAMPLE_PROMPT}\" {url}/api/v1/multimodal/analyze\n\n"
          f"  OpenAI-compatible base URL (Spring AI, LangChain4j, OpenAI SDKs): {url}/v1 "
          "(also served without /v1)\n"
          f"  health: {url}/health/ready   metrics: {url}/metrics   API description: {url}/openapi.json\n", flush=True)


def example_photo() -> Path:
    """A small picture to try the API with (a sunset: sky, sun, sea), made once."""
    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llava-service" / "photo.jpg"
    if not path.exists():
        from PIL import Image, ImageDraw

        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (640, 480), (250, 170, 90))
        draw = ImageDraw.Draw(image)
        for y in range(300):
            draw.line([(0, y), (640, y)], fill=(250 - y // 4, 120 + y // 4, 90 + y // 3))
        draw.ellipse([260, 200, 380, 320], fill=(255, 220, 120))
        draw.rectangle([0, 300, 640, 480], fill=(30, 70, 140))
        image.save(path, "JPEG", quality=90)
    return path


def terminate(child: subprocess.Popen, grace_s: float) -> None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
