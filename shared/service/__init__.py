"""Plumbing both Tessera services run on: settings from the environment, the database, logging,
metrics, request ids, the reverse-proxy fix, migrations, serving under gunicorn, the command-line
entrypoint, request body limits, the OpenAPI document, CORS and secrets read from files.

Built on Flask and SQLAlchemy; neither the client library nor the protocol primitives import it.
"""
