"""The demo stack for tests written in another language (the Java integration tests
in clients/java): started on free loopback ports, its URLs printed once it is ready,
stopped when the caller goes away.

    .venv/bin/python -m harness.serve [KEY=VALUE ...]

Each KEY=VALUE is a setting of `make demo`'s environment (README, "Settings"); the
rest stay at their defaults. Once the gateway finds the model ready, one line goes to
stdout: `{"gateway": URL, "model": URL, "supervisor": URL, "log": the stack's log file}`.
The stack stops when stdin reaches its end (the parent closed it, or died: a JVM
killed with SIGKILL runs no shutdown hook, but its end of the pipe still closes),
or on SIGTERM / SIGINT. Exit 0 after a clean stop; 1 if the stack did not come up.
"""
from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

from harness.stack import DemoStack, demo_env

READY_TIMEOUT_S = 300.0  # a cold machine builds the demo model first


def settings(argv: list[str]) -> dict[str, str]:
    pairs = {}
    for arg in argv:
        name, sep, value = arg.partition("=")
        if not sep or not name:
            raise SystemExit(f"harness.serve: {arg!r} is not KEY=VALUE")
        pairs[name] = value
    return pairs


def main(argv: list[str]) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # The caller's end of stdin closing is the normal way to stop.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    log = Path(tempfile.mkstemp(prefix="llava-stack-", suffix=".log")[1])
    stack = DemoStack(demo_env(**settings(argv)), log=log)
    try:
        try:
            stack.wait_ready(READY_TIMEOUT_S)
        except AssertionError as error:
            print(f"harness.serve: the stack did not come up ({error}); its log: {log}\n{stack.proc.tail(4000)}",
                  file=sys.stderr, flush=True)
            return 1
        print(json.dumps({"gateway": stack.url, "model": stack.model_url, "supervisor": stack.supervisor_url,
                          "log": str(log)}), flush=True)
        stop.wait()
        return 0
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
