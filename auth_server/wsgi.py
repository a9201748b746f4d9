"""gunicorn entry point: `gunicorn auth_server.wsgi:app` (settings from the environment)."""

from auth_server import create_app

app = create_app()
