"""The gateway: the public REST API in front of the model process (the contract is
docs/DESIGN.md). Two faces over one core, read top-down:

- settings.py: every setting, declared once.
- boundary.py: what every request goes through (request id, trace context, API
  key, counting, the request log) and the errors no face claims.
- native_api.py: the seed's API, POST /api/v1/multimodal/analyze (its models:
  native_schema.py). openai_api.py: the OpenAI face, /v1/chat/completions and
  /v1/models, also served without /v1 (openai_schema.py; chat.py turns a request
  into a model call; sse.py relays streams).
- answering.py: the core both faces call: cache -> single-flight -> admission ->
  upstream (breaker, timeouts) -> fallback.
- operations.py: health (Spring Actuator's shape) and metrics; openapi.py: the
  OpenAPI document, built from the request and answer models; model_state.py:
  the model's state and load progress (GET /health/model).
- pages.py: the playground (GET /) and the API docs (GET /docs), for a browser.

`create_app(settings)` builds everything; nothing lives at module level. Importing
this package imports no prometheus-client (multiproc.py says why it matters).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, current_app

# Room for the multipart framing and the prompt around the image. An early 413 (or
# 401) leaves the body unread: drain.py reads and drops it before the answer, so the
# client gets our JSON, not a reset (test_gateway_as_documented).
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass
class Parts:
    settings: object   # GatewaySettings
    metrics: object    # metrics.Metrics
    upstream: object   # upstream.Upstream
    core: object       # answering.Answering
    presets: dict      # name -> presets.Preset
    intake: object     # intake.Intake


def parts() -> Parts:
    """The running app's parts (for views and hooks)."""
    return current_app.extensions["gateway"]


def create_app(settings, clock=time.monotonic, resolver=None) -> Flask:
    from . import auth, boundary, model_state, native_api, openai_api, openapi, operations, pages
    from .admission import Admission
    from .answering import Answering
    from .cache import build_cache
    from .drain import DRAIN_LIMIT_FACTOR, DrainUnreadBody
    from .intake import Intake
    from .metrics import Metrics
    from .presets import load as load_presets
    from .upstream import Upstream

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    app.json.sort_keys = False
    metrics = Metrics()
    upstream = Upstream(settings, metrics, clock, resolver)  # resolver: DNS for MODEL_URL names (tests fake it)
    admission = Admission(settings.max_in_flight, settings.admission_queue, settings.admission_wait_s, metrics, clock,
                          weights={auth.tag(auth.tenant(key)): weight for key, weight in settings.admission_weights})
    core = Answering(settings, build_cache(settings, metrics, clock), upstream, admission, metrics)
    app.extensions["gateway"] = Parts(settings, metrics, upstream, core, load_presets(settings.presets_file),
                                      Intake(settings.decode_concurrency, metrics))
    boundary.install(app, faces=[openai_api.FACE, native_api.FACE])
    app.register_blueprint(native_api.bp)
    openai_api.register(app)
    app.register_blueprint(operations.bp)
    app.register_blueprint(openapi.bp)
    model_state.install(app)
    if settings.pages_enabled:
        app.register_blueprint(pages.bp)
    app.wsgi_app = DrainUnreadBody(app.wsgi_app, DRAIN_LIMIT_FACTOR * settings.max_upload_bytes)
    return app
