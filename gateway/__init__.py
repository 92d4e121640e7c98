"""The gateway: DESIGN.md's public REST API in front of the model process.

Read top-down: settings -> api (auth, validation, images) -> analyze (cache,
single-flight, admission, upstream with breaker, fallback) -> metrics. The
OpenAI face (openai_api: chat completions, models) takes the same path;
openapi serves both APIs as an OpenAPI 3 document.
`create_app(settings)` builds everything; nothing lives at module level.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask

from .admission import Admission
from .analyze import Analyzer
from .cache import build_cache
from .metrics import Metrics
from .settings import GatewaySettings
from .upstream import Upstream

# Room for the multipart framing and the prompt around the image. An early 413 (or
# 401) leaves the body unread; gunicorn reads and drops it before the next request on
# the connection, so the client gets our JSON, not a reset (test_gateway_gunicorn).
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass
class Parts:
    settings: GatewaySettings
    metrics: Metrics
    upstream: Upstream
    analyzer: Analyzer


def create_app(settings: GatewaySettings, clock=time.monotonic, resolver=None) -> Flask:
    from .api import bp
    from .openai_api import bp as openai_bp
    from .openapi import bp as openapi_bp

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    app.json.sort_keys = False
    metrics = Metrics()
    upstream = Upstream(settings, metrics, clock, resolver)  # resolver: DNS for MODEL_URL names (tests fake it)
    analyzer = Analyzer(settings, build_cache(settings, metrics, clock), upstream,
                        Admission(settings.max_in_flight, metrics), metrics)
    app.extensions["gateway"] = Parts(settings, metrics, upstream, analyzer)
    app.register_blueprint(bp)
    app.register_blueprint(openai_bp)
    app.register_blueprint(openapi_bp)
    return app
