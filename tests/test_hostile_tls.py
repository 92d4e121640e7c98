"""Issue 25, finding 2: the remote-image deadline holds over HTTPS too. A TLS server
the test runs itself on loopback, with a certificate from a throwaway CA made by the
test (the gateway trusts it through SSL_CERT_FILE), completes the handshake, then
drips one byte every second; another stalls the handshake itself. Both sent to the
gateway under gunicorn (the README's command) with a 2 s REMOTE_IMAGE_TIMEOUT_SECONDS.

Before: `wrap_socket` detached the raw socket, so the timer's `shutdown()` failed
with EBADF and was swallowed, and the TLS socket's timeout restarted with every
byte: each fetch held its thread for 30 s (the dripping server's own limit).
"""
from __future__ import annotations

import pytest

from tests.gateway_support import FakeUpstream, jpeg
from tests.hostile_support import Gunicorn, RawServer, ThrowawayCA, dripping, serves, silent, timed
from tests.test_hostile_remote import ask

pytestmark = pytest.mark.slow
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def tls():
    ca = ThrowawayCA()
    context = ca.server_context()
    servers = {"drip": RawServer(dripping(1.0), tls=context), "image": RawServer(serves(jpeg(80, 60)), tls=context),
               # accepts the connection, never answers the ClientHello
               "stalled_handshake": RawServer(silent)}
    servers["stalled_handshake"].url = f"https://localhost:{servers['stalled_handshake'].port}"
    fake = FakeUpstream()
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, REMOTE_IMAGE_ALLOW_PRIVATE="true",
                       REMOTE_IMAGE_TIMEOUT_SECONDS=TIMEOUT_S, SSL_CERT_FILE=str(ca.ca),
                       REMOTE_IMAGE_HOSTS=",".join(f"localhost:{s.port}" for s in servers.values()))
    try:
        yield gateway, servers, fake
    finally:
        gateway.stop()
        fake.close()
        for server in servers.values():
            server.close()
        ca.close()


def test_an_image_over_https_from_a_trusted_server_is_used(tls):
    """The control: the throwaway CA is trusted, the name verified, the image used."""
    gateway, servers, fake = tls
    response, elapsed = timed(ask, gateway.url, servers["image"].url + "/photo.jpg")
    assert response.status_code == 200, response.text[:300]
    assert fake.calls >= 1 and elapsed < TIMEOUT_S


@pytest.mark.parametrize("server", ["drip", "stalled_handshake"])
def test_an_https_server_that_drips_is_cut_off_at_the_deadline(tls, server):
    """Bound: 400 remote_image_refused within REMOTE_IMAGE_TIMEOUT_SECONDS + 0.5 s
    (before: 30 s, the dripping server's own limit; the client here gives up at 10 s)."""
    gateway, servers, _ = tls
    response, elapsed = timed(ask, gateway.url, servers[server].url + "/photo.png", timeout=10)
    assert not isinstance(response, Exception), f"no answer within 10 s: {response!r}"
    assert response.status_code == 400 and response.json()["error"]["code"] == "remote_image_refused"
    assert TIMEOUT_S - 0.2 < elapsed < TIMEOUT_S + 0.5, elapsed
