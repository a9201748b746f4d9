"""Entry point for gunicorn: `gunicorn resource_server.wsgi:app`."""

from resource_server import create_app

app = create_app()
