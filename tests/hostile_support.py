"""Helpers for the hostile-client tests (tests/test_hostile_*.py): the gateway under
real gunicorn (the README's command), Debian's nginx running deploy/nginx/nginx.conf
in front of it, the memory of a gunicorn worker read from /proc, and clients that
misbehave on purpose. Everything listens and connects on 127.0.0.1 only.

Memory is the worker's peak resident set (VmHWM): it is reset before a hostile
input is sent (/proc/PID/clear_refs, Linux 4.0+, as root) and read after, so the
bound covers everything the input made the worker hold at any moment (without
root: its resident set sampled every 2 ms).
"""
from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.procs import ROOT, Proc, free_port

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
README_COMMAND = [GUNICORN, "-c", "python:gateway.gunicorn_conf", "gateway.wsgi:app"]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
MIB = 1024 * 1024
# Settings a test must not inherit from the environment it runs in.
UNSET = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "GATEWAY_WORKERS", "GATEWAY_THREADS",
         "MAX_UPSTREAM_IN_FLIGHT", "ADMISSION_QUEUE", "ADMISSION_WAIT_SECONDS", "CACHE_URL", "API_KEYS",
         "GATEWAY_HOST", "ALLOW_ANONYMOUS")


# --------------------------------------------------------------------- processes

class Gunicorn:
    """The gateway as the README starts it; `env` adds settings (GATEWAY_PORT is chosen)."""

    def __init__(self, model_url: str, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(README_COMMAND, env={"GATEWAY_PORT": str(self.port), "MODEL_URL": model_url,
                                              **{k: str(v) for k, v in env.items()}},
                         unset=tuple(name for name in UNSET if name not in env))
        self.proc.wait_for(self.url + "/health/live", timeout=60)

    def workers(self) -> list[int]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = children(self.proc.pid)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError("gunicorn started no worker")

    def worker(self) -> int:
        [pid] = self.workers()
        return pid

    def stop(self) -> int | None:
        return self.proc.stop()


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.skip("nginx is not installed: the proxy tests run Debian's nginx (.ci/run installs it with apt-get)")
    return found


class Nginx:
    """deploy/nginx/nginx.conf as shipped, with only its listen address and its
    upstream (compose's `gateway:8000`) pointed at loopback ports."""

    def __init__(self, upstream_port: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-"))
        self.dir.chmod(0o755)  # nginx's workers (nobody, when the tests run as root) write their temp files here
        conf = configured(NGINX_CONF.read_text(), self.port, upstream_port)
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = Proc([nginx_binary(), "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"), "-e", "stderr",
                          "-g", "daemon off;"])
        deadline = time.monotonic() + 10
        while not listening(self.port):
            if self.proc.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("nginx did not start:\n" + self.proc.output()[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def configured(conf: str, port: int, upstream_port: int) -> str:
    """The shipped file with two lines changed (each must exist exactly once)."""
    conf, listens = re.subn(r"^(\s*)listen 8080;$", rf"\1listen 127.0.0.1:{port};", conf, flags=re.M)
    conf, upstreams = re.subn(r"^(\s*)server gateway:8000;", rf"\1server 127.0.0.1:{upstream_port};", conf, flags=re.M)
    assert (listens, upstreams) == (1, 1), "deploy/nginx/nginx.conf changed its listen or upstream line"
    return conf


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------- memory

def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Peak:
    """The rise of a process's peak resident memory over a block, in MiB:
    `with Peak(pid) as peak: ...; peak.mib`. The kernel's own peak (VmHWM, reset at
    the start through /proc/PID/clear_refs, which needs root) when it can be reset;
    otherwise VmRSS sampled every 2 ms (which may miss a peak shorter than that)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.mib = self.rss_mib = None

    def __enter__(self):
        self.before = status_kib(self.pid, "VmRSS")
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.sampler = None
        except OSError:
            self.highest, self.done = self.before, threading.Event()
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.002):
            self.highest = max(self.highest, status_kib(self.pid, "VmRSS"))

    def __exit__(self, *exc):
        if self.sampler is None:
            peak = status_kib(self.pid, "VmHWM")
        else:
            self.done.set()
            self.sampler.join()
            peak = max(self.highest, status_kib(self.pid, "VmRSS"))
        self.mib = (peak - self.before) / 1024
        self.rss_mib = status_kib(self.pid, "VmRSS") / 1024


# --------------------------------------------------------------------- clients

def timed(fn, *args, **kwargs):
    """(fn's result or the exception it raised, seconds taken)."""
    started = time.monotonic()
    try:
        result = fn(*args, **kwargs)
    except requests.RequestException as exc:
        result = exc
    return result, time.monotonic() - started


class SlowClients:
    """`count` connections that each send a request line, then one byte of header
    (or, with `body=True`, complete headers and then one byte of body) every
    `every_s`, until closed: the slowloris pattern."""

    def __init__(self, port: int, count: int, body: bool = False, every_s: float = 2.0):
        self.socks, self.stop_ = [], threading.Event()
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if body:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\n\r\n{")
            else:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            self.socks.append(s)
        self.thread = threading.Thread(target=self._drip, args=(every_s, body), daemon=True)
        self.thread.start()

    def _drip(self, every_s: float, body: bool) -> None:
        while not self.stop_.wait(every_s):
            for s in self.socks:
                try:
                    s.sendall(b" " if body else b"X")
                except OSError:
                    pass

    def close(self) -> None:
        self.stop_.set()
        self.thread.join()
        for s in self.socks:
            s.close()


# --------------------------------------------------------------------- hostile schemas

def hostile_any_of(branches: int) -> dict:
    """Issue 25, finding 1: `anyOf` objects sharing six properties, each with one of its
    own (120 of them: 12 KB, inside the size and depth limits)."""
    shared = {name: {} for name in "abcdef"}
    return {"anyOf": [{"type": "object", "properties": {**shared, f"k{i}": {}}, "required": [f"k{i}"]}
                      for i in range(branches)]}


# --------------------------------------------------------------------- hostile image servers

class RawServer:
    """A TCP server on 127.0.0.1 that runs `handle(sock)` for each connection in a
    thread of its own, counting connections and the most open at once; with `tls` (a
    server-side SSLContext) behind a TLS handshake, at https://localhost:PORT."""

    def __init__(self, handle, tls: ssl.SSLContext | None = None):
        self.handle, self.tls = handle, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"https://localhost:{self.port}" if tls else f"http://127.0.0.1:{self.port}"
        self.connections = self.open = self.most_open = 0
        self.requests: list[bytes] = []
        self.accepted_at: list[float] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with self.lock:
            self.accepted_at.append(time.monotonic())
            self.connections += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            sock.settimeout(30)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.requests.append(head)
            self.handle(sock, self.closed)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            sock.close()

    def most_within(self, window_s: float) -> int:
        """The most connections accepted within any `window_s` (a peer's view of how
        many it had open at once, unblurred by how late it notices a close)."""
        times = sorted(self.accepted_at)
        return max((sum(1 for t in times if start <= t < start + window_s) for start in times), default=0)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


def dripping(every_s: float = 1.0):
    """Headers at once, then one byte of body every `every_s` (the review's 1 byte/s server)."""
    def handle(sock, closed) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
        while not closed.wait(every_s):
            sock.sendall(b"\x89")
    return handle


drip_body = dripping(1.0)


def drip_headers(sock, closed) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\n")
    while not closed.wait(0.5):
        sock.sendall(b"X")


def silent(sock, closed) -> None:
    closed.wait(30)


def html_page(sock, closed) -> None:
    page = b"<html>admin console</html>"
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page) + page)


def not_http(sock, closed) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def redirect(sock, closed) -> None:
    sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")


def serves(body: bytes):
    def handle(sock, closed) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return handle


class ThrowawayCA:
    """A certificate authority made for one test (openssl, in a temporary directory)
    and a certificate it signed for `localhost` and 127.0.0.1. A gateway started with
    SSL_CERT_FILE=ca.pem trusts it (OpenSSL reads that variable for the default
    verify paths); nothing else does."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="throwaway-ca-"))
        self.ca, self.cert, self.key = self.dir / "ca.pem", self.dir / "cert.pem", self.dir / "key.pem"
        ext = self.dir / "ext.cnf"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        run = lambda *args: subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", str(self.ca),
            "-days", "1", "-subj", "/CN=llava test CA")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out", "cert.csr",
            "-subj", "/CN=localhost")
        run("x509", "-req", "-in", "cert.csr", "-CA", str(self.ca), "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", str(self.cert), "-days", "1", "-extfile", str(ext))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

