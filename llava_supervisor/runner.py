"""The supervisor's main loop: the one thread that spawns the child, feeds the state
machine (signals, exits, probe answers, time) and serves /status and /metrics.

Signal handlers only queue the signal; the loop handles it on its next tick
(`handle_<signal>`, gunicorn style), so no lock is ever taken inside a handler.
Probes run on a worker thread so that a hung child never delays the loop.
"""
from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import requests
import waitress

from llava_common import exit_codes

from .child import Child
from .server import create_app
from .settings import SupervisorSettings
from .states import PATH_HEALTH, Machine, State

log = logging.getLogger("llava_supervisor")

TICK_S = 0.05  # how often the loop looks at signals, the child and deadlines
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
    def __init__(self, settings: SupervisorSettings, argv: list[str], name: str, env: dict[str, str] | None = None):
        self.settings = settings
        # Python children write their output in lines, not 8 KiB blocks, into our pipes.
        child_env = {"PYTHONUNBUFFERED": "1", **(os.environ if env is None else env)}
        self.child = Child(argv, child_env, name)
        self.machine = Machine(settings, self.child)
        self.lock = threading.Lock()  # the machine is read by HTTP threads
        self._signals: collections.deque[int] = collections.deque()
        self._probes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
        self._probe: tuple[int, str, Future] | None = None
        self._next_probe_at = 0.0
        self._http = None

    # ---- lifecycle ----

    def run(self) -> int:
        for sig in SIGNALS:
            signal.signal(sig, lambda signum, _frame: self._signals.append(signum))
        try:
            self._http = waitress.create_server(create_app(self.status), host=self.settings.host,
                                                port=self.settings.port, threads=4, ident="llava-supervisor")
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", self.settings.host, self.settings.port, exc.strerror or exc)
            return exit_codes.BOOT_ERROR
        threading.Thread(target=self._http.run, name="http", daemon=True).start()
        log.info("status on http://%s:%s/status, supervising: %s", self.settings.host, self._http.effective_port,
                 " ".join(self.child.argv))
        try:
            with self.lock:
                self.machine.start()
            while not self.machine.finished:
                self._step()
                time.sleep(TICK_S)
        finally:
            self.child.kill_and_reap()  # only does anything if the loop died of a bug
            self._probes.shutdown(wait=False, cancel_futures=True)
            # No self._http.close(): closing waitress's socket under its loop thread
            # races with that loop (EBADF traceback); the process exits right after.
        if self.machine.state is State.FATAL:
            log.critical("exiting with code %d (FATAL): %s", exit_codes.FATAL, self.machine.fatal_reason)
            return exit_codes.FATAL
        log.info("stopped")
        return exit_codes.OK

    @property
    def port(self) -> int | None:
        return None if self._http is None else self._http.effective_port

    def status(self) -> dict:
        with self.lock:
            return self.machine.snapshot()

    # ---- one tick ----

    def _step(self) -> None:
        with self.lock:
            while self._signals:
                sig = signal.Signals(self._signals.popleft())
                getattr(self, f"handle_{sig.name.lower()}")()
            code = self.child.poll()
            if code is not None:
                self.machine.on_exit(code)
            self._collect_probe()
            self.machine.tick()
            self._start_probe()

    def handle_sigterm(self) -> None:
        log.info("SIGTERM: stopping the child")
        self.machine.stop()

    def handle_sigint(self) -> None:
        log.info("SIGINT: stopping the child")
        self.machine.stop()

    def handle_sighup(self) -> None:
        log.info("SIGHUP: restarting the child")
        self.machine.restart()

    # ---- probes ----

    def _start_probe(self) -> None:
        path = self.machine.probe_path()
        now = time.monotonic()
        if path is None or self._probe is not None or now < self._next_probe_at:
            return
        self._next_probe_at = now + self.settings.poll_interval_s
        url = self.settings.probe_base_url + path
        self._probe = (self.machine.generation, path, self._probes.submit(probe, url, self.settings.poll_timeout_s))

    def _collect_probe(self) -> None:
        if self._probe is None or not self._probe[2].done():
            return
        generation, path, future = self._probe
        self._probe = None
        status, body, detail = future.result()
        if path == PATH_HEALTH:
            self.machine.on_health(generation, status, body)
        else:
            self.machine.on_live(generation, status == 200, detail)


def probe(url: str, timeout: float) -> tuple[int | None, object, str]:
    """(HTTP status or None, JSON body or None, what happened) for one GET."""
    try:
        response = requests.get(url, timeout=timeout)
    except requests.Timeout:
        return None, None, f"no answer within {timeout:g}s"
    except requests.RequestException as exc:
        return None, None, f"cannot connect ({type(exc).__name__})"
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body, f"HTTP {response.status_code}"
