"""`python -m auth_server`: serve it under gunicorn (`serve`), or run an operator command."""

from shared.service.entrypoint import main

main("auth_server")
