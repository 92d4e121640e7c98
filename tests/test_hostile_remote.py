"""Issue 17, "remote images": chat requests naming image URLs on hosts the test
serves itself on loopback (a 1 byte/s server, a server that never answers, an HTML
page, a port that speaks SSH, a closed port), sent to the gateway under gunicorn.
Loopback is private: one gateway opens it with REMOTE_IMAGE_ALLOW_PRIVATE=true to
reach these servers, the other keeps the default and must refuse them without
connecting. Addresses that must be refused (link-local, metadata) are never
connected to, so no traffic leaves the machine.

Before (the review): the deadline was checked between 64 KiB reads, so a 1 byte/s
server held a thread for 20 s under a 5 s limit; fetches took no slot of any kind;
the allow-list checked names only (`localhost` reached the model process's port);
the error text told open ports from closed ones.
"""
from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway import remote_images
from gateway.settings import GatewaySettings
from llava_common.settings import SettingsError
from tests.gateway_support import FakeUpstream, gateway, jpeg
from tests.hostile_support import (
    README_COMMAND,
    Gunicorn,
    Peak,
    RawServer,
    drip_body,
    drip_headers,
    dripping,
    html_page,
    not_http,
    redirect,
    serves,
    silent,
    timed,
)
from tests.procs import Proc, free_port

pytestmark = pytest.mark.slow
CHAT = "/v1/chat/completions"
TIMEOUT_S = 2.0


def ask(url: str, image_url: str, text: str = "What is it?", timeout: float = 30) -> requests.Response:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": text},
                                                      {"type": "image_url", "image_url": {"url": image_url}}]}],
            "max_tokens": 8}
    return requests.post(url + CHAT, json=body, timeout=timeout)


@pytest.fixture(scope="module")
def servers():
    made = {name: RawServer(handle) for name, handle in (
        ("drip_body", drip_body), ("drip_fast", dripping(0.05)), ("drip_headers", drip_headers), ("silent", silent),
        ("html", html_page), ("ssh", not_http), ("redirect", redirect), ("image", serves(jpeg(80, 60))))}
    made["closed"] = type("Closed", (), {"port": free_port()})()  # nothing listens there
    made["closed"].url = f"http://127.0.0.1:{made['closed'].port}"
    try:
        yield made
    finally:
        for server in made.values():
            if isinstance(server, RawServer):
                server.close()


def allow_list(servers) -> str:
    return ",".join(f"127.0.0.1:{s.port}" for s in servers.values()) + ",169.254.169.254:80"


@pytest.fixture(scope="module")
def private(servers):
    """A gateway that may fetch from loopback (where the test's servers are)."""
    fake = FakeUpstream()
    gw = Gunicorn(fake.url, GATEWAY_WORKERS=1, REMOTE_IMAGE_HOSTS=allow_list(servers),
                  REMOTE_IMAGE_ALLOW_PRIVATE="true", REMOTE_IMAGE_TIMEOUT_SECONDS=TIMEOUT_S)
    try:
        yield gw, fake
    finally:
        gw.stop()
        fake.close()


def error(response: requests.Response) -> dict:
    assert response.status_code == 400, response.text[:300]
    return response.json()["error"]


@pytest.mark.parametrize("server", ["drip_body", "drip_headers", "silent"])
def test_a_slow_server_is_cut_off_at_the_deadline(private, servers, server):
    """Bound: 400 remote_image_refused within REMOTE_IMAGE_TIMEOUT_SECONDS + 0.5 s
    (2.5 s), the worker +10 MiB (before: 20 s at 1 byte/s under a 5 s limit)."""
    gw, fake = private
    calls = fake.calls
    with Peak(gw.worker()) as peak:
        response, elapsed = timed(ask, gw.url, servers[server].url + "/photo.png")
    assert error(response)["code"] == "remote_image_refused"
    assert TIMEOUT_S - 0.2 < elapsed < TIMEOUT_S + 0.5, elapsed
    assert peak.mib < 10 and fake.calls == calls


def test_fetches_hold_an_intake_slot_and_health_stays_answered(private, servers):
    """Six requests at once to a server that drips its body (a byte every 50 ms, so it
    notices a closed connection at once): at most DECODE_CONCURRENCY (2) fetches are
    open at once; every request is answered 400 (or 429 past the 10 s slot wait)
    within 10.5 s; /health/live answers in under 1 s throughout."""
    gw, _ = private
    drip = servers["drip_fast"]
    drip.accepted_at.clear()
    with ThreadPoolExecutor(7) as pool:
        asked = [pool.submit(timed, ask, gw.url, drip.url + f"/{i}.png") for i in range(6)]
        time.sleep(0.5)
        health = []
        while not all(f.done() for f in asked):
            health.append(timed(requests.get, gw.url + "/health/live", timeout=5))
            time.sleep(0.25)
    answers = [f.result() for f in asked]
    assert {r.status_code for r, _ in answers} <= {400, 429}, [r.text[:200] for r, _ in answers]
    assert max(elapsed for _, elapsed in answers) < 10.5
    # each fetch lasts TIMEOUT_S: slots held two at a time open at most two connections in any 1.5 s
    assert drip.most_within(1.5) == 2, drip.accepted_at
    assert health and all(r.status_code == 200 and t < 1.0 for r, t in health), health


def test_every_failure_gets_the_same_answer(private, servers):
    """A closed port, an HTML page, an SSH banner, a redirect, a slow server and a
    working image server that is not an image host all look alike to the client:
    one status, one code, one message (the log has the reason). Only a real image
    is answered."""
    gw, fake = private
    answers = {name: ask(gw.url, servers[name].url + "/photo.png")
               for name in ("closed", "html", "ssh", "redirect", "drip_headers")}
    bodies = {name: json.dumps(error(r), sort_keys=True) for name, r in answers.items()}
    assert len(set(bodies.values())) == 1, bodies
    assert ask(gw.url, servers["image"].url + "/photo.jpg").status_code == 200
    assert fake.payloads[-1]["messages"][-1]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_metadata_and_link_local_addresses_are_refused_even_with_private_allowed(private):
    """169.254.169.254:80 is on the allow-list here, and REMOTE_IMAGE_ALLOW_PRIVATE is
    on: still 400 at once (under 0.5 s: no connection was tried)."""
    gw, _ = private
    response, elapsed = timed(ask, gw.url, "http://169.254.169.254/latest/meta-data/iam/")
    assert error(response)["code"] == "remote_image_refused" and elapsed < 0.5


def test_loopback_is_refused_after_resolution_by_default(servers):
    """The allow-list names `localhost:PORT` (the review: `localhost` reached the model
    process's own port): the name resolves to loopback, so the default gateway refuses
    it without connecting, and so it does for 127.0.0.1 and ::ffff:127.0.0.1."""
    image = servers["image"]
    fake = FakeUpstream()
    model_port = fake.url.rsplit(":", 1)[1]
    hosts = f"localhost:{image.port},127.0.0.1:{model_port},[::ffff:127.0.0.1]:{image.port}"
    gw = Gunicorn(fake.url, GATEWAY_WORKERS=1, REMOTE_IMAGE_HOSTS=hosts, REMOTE_IMAGE_TIMEOUT_SECONDS=TIMEOUT_S)
    try:
        hits = image.connections
        answers = [timed(ask, gw.url, url) for url in (f"http://localhost:{image.port}/photo.jpg",
                                                       f"http://127.0.0.1:{model_port}/v1/models",
                                                       f"http://[::ffff:127.0.0.1]:{image.port}/photo.jpg")]
    finally:
        gw.stop()
        fake.close()
    for response, elapsed in answers:
        assert error(response)["code"] == "remote_image_refused" and elapsed < 0.5
    assert image.connections == hits and fake.calls == 0


def test_allow_list_entries_need_a_port():
    with pytest.raises(SettingsError, match="must be host:port"):
        GatewaySettings.from_env({"REMOTE_IMAGE_HOSTS": "localhost"})
    proc = Proc(README_COMMAND,
                env={"GATEWAY_PORT": str(free_port()), "REMOTE_IMAGE_HOSTS": "images.example.com"})
    assert proc.wait(timeout=30) == 3 and "must be host:port" in proc.output()


def test_the_connection_goes_to_the_checked_address(monkeypatch):
    """The name is resolved once, checked, and connected to by address (the Host
    header still names it); a name with one private address among public ones is
    refused whole. DNS is the one fake here."""
    seen = []
    server = RawServer(serves(jpeg(40, 30)))
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        seen.append(host)
        answers = {"images.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "10.1.2.3"]}
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answers[host]]

    monkeypatch.setattr(remote_images.socket, "getaddrinfo", resolve)
    fake = FakeUpstream()
    try:
        with gateway(fake.url, REMOTE_IMAGE_HOSTS=f"images.test:{server.port},mixed.test:{server.port}",
                     REMOTE_IMAGE_ALLOW_PRIVATE="true") as (url, _):
            fetched = ask(url, f"http://images.test:{server.port}/photo.jpg")
            connections = server.connections
            mixed = ask(url, f"http://mixed.test:{server.port}/photo.jpg")
    finally:
        server.close()
        fake.close()
    assert fetched.status_code == 200, fetched.text
    assert seen.count("images.test") == 1 and f"Host: images.test:{server.port}".encode() in server.requests[0]
    assert error(mixed)["code"] == "remote_image_refused" and server.connections == connections
