"""The model process: LLaVA-NeXT behind the internal API on MODEL_PORT.

    MODEL_PATH=demo python llava_server.py

The HTTP server starts first, so /health/live answers and /health reports loading
progress while the weights load; /health turns 200 after warmup. The main thread
loads the model, then runs the batching engine. SIGTERM or SIGINT:
refuse new work, finish what is running within SHUTDOWN_GRACE_SECONDS, exit 0.
Exit codes: llava_common/exit_codes.py (3 = cannot start with this configuration).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from llava_common import exit_codes, logs
from llava_common.settings import load_or_exit

log = logging.getLogger("llava_server")


def main() -> int:
    from llava_runtime.settings import ModelSettings

    settings = load_or_exit(ModelSettings, "llava_server")
    logs.configure("model", settings.log_level)

    import waitress

    from llava_runtime.loader import BootError
    from llava_runtime.server import create_app
    from llava_runtime.service import Service

    service = Service(settings)
    app = create_app(settings, service)
    try:
        server = waitress.create_server(app, host=settings.host, port=settings.port, threads=settings.http_threads,
                                        connection_limit=max(100, settings.http_threads * 2), ident="llava-model")
    except OSError as exc:  # e.g. the port is still held by a previous instance: worth a restart
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        return exit_codes.CRASH
    threading.Thread(target=server.run, name="http", daemon=True).start()
    log.info("listening on http://%s:%s (model %s)", settings.host, server.effective_port, settings.model_path)

    def handle_stop(signum, _frame):
        if service.stopping or not service.ready:
            raise SystemExit(0)  # still starting (nothing to drain), or asked twice: stop now
        log.info("%s: finishing in-flight requests (up to %.0fs)", signal.Signals(signum).name,
                 settings.shutdown_grace_s)
        service.begin_stop(settings.shutdown_grace_s)

    signal.signal(signal.SIGTERM, handle_stop)
    signal.signal(signal.SIGINT, handle_stop)
    try:
        service.load(on_fatal=lambda: os._exit(exit_codes.CRASH))
        threading.Thread(target=service.warm_up, name="warmup", daemon=True).start()
        service.engine.run()  # on this (main) thread, until a stop has drained
    except BootError as exc:
        log.error("cannot start: %s", exc)
        return exit_codes.BOOT_ERROR
    except SystemExit:
        log.info("stopped at once (during start-up, or a second stop signal)")
        return exit_codes.OK
    if service.boot_error:
        log.error("cannot start: %s", service.boot_error)
        return exit_codes.BOOT_ERROR
    # The engine has drained; let the last answers reach their clients: first every
    # response body is closed, then waitress has written out what it buffered.
    deadline = service.stop_deadline or time.monotonic()
    if not service.responses.wait_idle(deadline) or not _wait_for_output(server, deadline):
        log.warning("stopping with answers still being sent (grace period over)")
    log.info("stopped")
    # No server.close(): closing waitress's socket under its loop thread races with
    # that loop; the process exits now and the OS closes the socket.
    return exit_codes.OK


def _wait_for_output(server, deadline: float) -> bool:
    """True once no connection has bytes waiting to be sent. Reads waitress's channel
    bookkeeping (`active_channels`, `total_outbufs_len`; waitress is pinned): the
    body's close() comes before its buffered bytes reach the socket."""
    while time.monotonic() < deadline:
        if not any(getattr(ch, "total_outbufs_len", 0) for ch in list(server.active_channels.values())):
            return True
        time.sleep(0.02)
    return False


if __name__ == "__main__":
    sys.exit(main())
