"""The two pages a person opens in a browser, both off with PAGES_ENABLED=false:

- `GET /`: the playground (web/playground.html, .css, .js): an image, a question or
  a preset, the answer as it streams in, its status, latency and tokens, and the
  model's state (GET /health/model, model_state.py).
- `GET /docs`: Swagger UI over /openapi.json, from the pinned flask-swagger-ui wheel
  (its dist/ folder only: its blueprint renders the configuration as an inline
  script, which our Content-Security-Policy forbids), started by web/docs.js.

Plain files, no template and no build step; they call the API with relative URLs, so
they also work under a path prefix behind a proxy. The Content-Security-Policy lets
them load and call nothing but this origin and run no inline script. They are open
without an API key (boundary.py): they hold no data, and the playground asks the
person for the key, which it keeps in the tab's sessionStorage only.
"""
from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, abort, send_from_directory

bp = Blueprint("pages", __name__, static_folder="web", static_url_path="/ui")
WEB = str(files(__package__) / "web")
SWAGGER_DIST = str(files("flask_swagger_ui") / "dist")
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")
CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",           # files from this origin only: no inline script, no eval
    "style-src 'self'",
    "img-src 'self' data: blob:",  # blob: the chosen image's preview; data: Swagger UI's icons
    "connect-src 'self'",          # the API calls
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",          # the forms are sent by script, never navigated
    "frame-ancestors 'none'",
))


@bp.get("/")
def playground():
    return send_from_directory(WEB, "playground.html")


@bp.get("/docs")
def docs():
    return send_from_directory(WEB, "docs.html")


@bp.get("/docs/swagger-ui/<name>")
def swagger(name: str):
    if name not in SWAGGER_FILES:
        abort(404)
    return send_from_directory(SWAGGER_DIST, name)


@bp.after_request
def protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"  # revalidate (ETag): a new release's files are seen at once
    return response
