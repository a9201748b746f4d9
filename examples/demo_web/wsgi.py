"""`gunicorn examples.demo_web.wsgi:app` (scripts/run-demo, docker-compose.yml)."""

from examples.demo_web import create_app

app = create_app()
