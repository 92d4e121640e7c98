"""WSGI entry point for gunicorn: `gunicorn -c python:gateway.gunicorn_conf gateway.wsgi:app`."""
from . import logs
from .settings import GatewaySettings
from . import create_app

settings = GatewaySettings.from_env()
logs.configure(settings.log_level)
app = create_app(settings)
