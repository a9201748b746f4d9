"""`python -m auth_server`: serve it under gunicorn (`serve`), or run an operator command."""

from shared.entrypoint import main

main("auth_server")
