"""The supervisor's settings: one frozen object, read once from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass

from llava_common import logs
from llava_common.settings import SettingsError, choice, integer, load, number, setting, text


@dataclass(frozen=True)
class SupervisorSettings:
    """All other variables (`MODEL_PATH`, `SHUTDOWN_GRACE_SECONDS`, ...) pass through to
    the child unchanged. Container stop timeouts must exceed
    `SUPERVISOR_STOP_GRACE_SECONDS` (Docker's default is 10 s: set `stop_grace_period`;
    Kubernetes: `terminationGracePeriodSeconds`)."""

    host: str = setting("SUPERVISOR_HOST", "127.0.0.1", text,
                        "Address of the supervisor's /status and /metrics (0.0.0.0 inside a container)")
    port: int = setting("SUPERVISOR_PORT", 8082, integer(0, 65535), "Port of /status and /metrics (0 = any free port)")
    model_host: str = setting("MODEL_HOST", "127.0.0.1", text,
                              "Address the child listens on; probes go to loopback when it is 0.0.0.0 or ::")
    model_port: int = setting("MODEL_PORT", 8081, integer(1, 65535),
                              "Port where the child serves /health and /health/live")
    poll_interval_s: float = setting("SUPERVISOR_POLL_INTERVAL_SECONDS", 1.0, number(0.01, 3600),
                                     "Seconds between probes (/health while starting, /health/live once READY)")
    poll_timeout_s: float = setting("SUPERVISOR_POLL_TIMEOUT_SECONDS", 5.0, number(0.01, 3600),
                                    "A probe that takes longer than this has failed")
    failure_threshold: int = setting("SUPERVISOR_FAILURE_THRESHOLD", 3, integer(1, 1000),
                                     "Failed /health/live probes in a row that make a READY child UNHEALTHY (it is then"
                                     " replaced)")
    start_stall_s: float = setting("SUPERVISOR_START_STALL_SECONDS", 300.0, number(0.1, 86_400),
                                   "While STARTING, how long /health may go without reporting new loading progress "
                                   "before the child is replaced")
    stop_grace_s: float = setting("SUPERVISOR_STOP_GRACE_SECONDS", 30.0, number(0, 3600),
                                  "After SIGTERM, how long the child may take to exit before SIGKILL (keep above the "
                                  "child's SHUTDOWN_GRACE_SECONDS)")
    backoff_base_s: float = setting("SUPERVISOR_BACKOFF_BASE_SECONDS", 1.0, number(0, 3600),
                                    "Delay before the first restart after a failure; doubles with each failure in a row"
                                    " (with jitter)")
    backoff_max_s: float = setting("SUPERVISOR_BACKOFF_MAX_SECONDS", 60.0, number(0, 86_400),
                                   "Longest delay between restarts")
    stable_s: float = setting("SUPERVISOR_STABLE_SECONDS", 60.0, number(0, 86_400),
                              "A child READY this long counts as started: the failure count and the backoff reset")
    max_failed_starts: int = setting("SUPERVISOR_MAX_FAILED_STARTS", 5, integer(1, 1000),
                                     "Failures in a row (exits or replacements before a child was stable) that make the"
                                     " supervisor FATAL")
    tail_lines: int = setting("SUPERVISOR_TAIL_LINES", 20, integer(0, 10_000),
                              "Last output lines of the child kept and logged when it exits")
    log_level: str = setting("LOG_LEVEL", "info", choice(*logs.LEVELS), "Log verbosity")

    def __post_init__(self):
        if self.backoff_max_s < self.backoff_base_s:
            raise SettingsError(f"invalid settings: SUPERVISOR_BACKOFF_MAX_SECONDS={self.backoff_max_s:g} "
                                f"must be >= SUPERVISOR_BACKOFF_BASE_SECONDS={self.backoff_base_s:g}")

    @property
    def probe_base_url(self) -> str:
        # A child listening on every interface is reached on loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.model_host, self.model_host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.model_port}"

    @classmethod
    def from_env(cls, environ=None) -> "SupervisorSettings":
        return load(cls, os.environ if environ is None else environ)
