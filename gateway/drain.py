"""Every answer reaches a client that sends its whole body before it reads.

requests, Spring's RestTemplate and curl (below its 1 MiB Expect threshold) write
the whole request, then read. When the gateway answers before reading the body (a
413 judged from Content-Length, a 401 judged from the headers, a 404), gunicorn
drains at most 64 KiB of what is left and otherwise closes the connection, after
it has already said `Connection: keep-alive`: the client, still sending, gets a
reset (EPIPE) instead of the answer (measured: 21 MB and 5 MB uploads).

So before the status line leaves, the rest of the body is read and dropped, up to
DRAIN_LIMIT_FACTOR x MAX_UPLOAD_BYTES and DRAIN_SECONDS: the client finishes
sending, reads the answer, and the connection stays usable. A larger or slower
body is not worth reading: that answer closes the connection and says so.
"""
from __future__ import annotations

import time

# A refused upload a few times over the limit (a phone's 60 MB photo) still reads
# its 413; reading 80 MB at loopback or LAN speed takes well under a second.
DRAIN_LIMIT_FACTOR = 4
# A client slower than this is not kept waiting for the rest of its own upload.
DRAIN_SECONDS = 10.0
_CHUNK = 256 * 1024


class DrainUnreadBody:
    """WSGI middleware: drain the unread request body before the answer starts."""

    def __init__(self, app, limit_bytes: int, seconds: float = DRAIN_SECONDS, clock=time.monotonic):
        self.app, self.limit_bytes, self.seconds, self.clock = app, limit_bytes, seconds, clock

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            # Only where the server ends the input at the body's end (gunicorn does;
            # werkzeug's dev server only for chunked bodies): reading on would block.
            if environ.get("wsgi.input_terminated") and not self._drain(environ["wsgi.input"]):
                _force_close(start_response)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)

    def _drain(self, stream) -> bool:
        """True when the body was read to its end within the bounds."""
        deadline, left = self.clock() + self.seconds, self.limit_bytes
        while left > 0 and self.clock() < deadline:
            data = stream.read(min(_CHUNK, left))
            if not data:
                return True
            left -= len(data)
        return not stream.read(1)


def _force_close(start_response) -> None:
    # gunicorn drops a Connection header set by the app (hop-by-hop), so its own
    # Response, whose start_response this is, is told: it then answers
    # `Connection: close` and closes. Other servers: nothing to do here.
    close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if close is not None:
        close()
