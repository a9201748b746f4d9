"""`python -m resource_server`: serve it under gunicorn (`serve`), or run an operator command."""

from shared.service.entrypoint import main

main("resource_server")
