"""WSGI entry point for gunicorn: `gunicorn -c python:gateway.gunicorn_conf gateway.wsgi:app`."""
from . import create_app, logs
from .settings import GatewaySettings

settings = GatewaySettings.from_env()
logs.configure(settings.log_level)
app = create_app(settings)
