"""gunicorn configuration, from GatewaySettings (one source for every setting).

Settings are validated here, in the master, so a bad value stops the start with
one clear message (exit 3, gunicorn's and our boot-error code) instead of every
worker failing. The metrics directory is chosen before any worker starts (and
before anything imports prometheus-client: see multiproc.py), emptied at start,
and removed at exit when it was made here; a worker that exits is marked dead so
its live gauges drop out.

Memory: malloc's arenas are capped here, in the master, so every worker it forks
inherits the cap (memory.py), and a worker is replaced after GATEWAY_MAX_REQUESTS
requests (plus jitter, so they do not all restart at once). gunicorn binds where
GATEWAY_HOST says; beyond loopback it belongs behind the buffering proxy
(deploy/nginx/nginx.conf): its threads read requests as slowly as clients send them.
"""
import os

from gateway import local_cache, memory, multiproc
from gateway.settings import GatewaySettings
from llava_common.settings import load_or_exit

_settings = load_or_exit(GatewaySettings, "gateway")
_made_metrics_dir = multiproc.choose()
memory.limit_arenas()
# One answer cache for all workers: its directory, like the metrics', is chosen before they fork.
_made_cache_dir = local_cache.choose_dir()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.workers
worker_class = "gthread"
threads = _settings.threads
# A gthread worker's heartbeat does not depend on its request threads, so a model
# call that runs long does not get the worker killed.
timeout = 30
# Requests waiting for a model call slot are in flight too: they get their answer.
graceful_timeout = _settings.graceful_timeout_s
keepalive = 5
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests // 10
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "llava-gateway"
# gunicorn's control socket (~/.gunicorn/gunicorn.ctl) is one path per user: two
# gateways on one host would fight over it, and nothing here uses it.
control_socket_disable = True


def on_starting(server):
    multiproc.prepare(os.environ[multiproc.ENV])


def child_exit(server, worker):
    multiproc.worker_exited(worker.pid)


def on_exit(server):
    multiproc.remove(_made_metrics_dir)
    local_cache.remove_dir(_made_cache_dir)
