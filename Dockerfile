# One image for both Tessera services (and their migrations).
#
#   docker build -t tessera .
#   docker run -e SERVICE=auth_server     ... tessera    # the default
#   docker run -e SERVICE=resource_server ... tessera
#   docker run ... tessera flask --app auth_server db upgrade
#
# Settings come from the environment (README "Settings"); docker-compose.yml runs the stack.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: compilers available, builds the virtualenv -----------------------------------
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

WORKDIR /src
# Dependencies first, from the lock file alone: exact versions, every file checked against its
# hash (`make lock` writes it from pyproject.toml), so two builds install the same bytes and a
# code change does not reinstall them. The build backend (setuptools) is in the lock too.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
# Then the project itself, as a regular (non-editable) install without fetching anything: the
# packages, their migrations (package data) and nothing else land in /opt/venv.
COPY pyproject.toml README.md ./
COPY auth_server ./auth_server
COPY resource_server ./resource_server
COPY shared ./shared
# The demo web app (SERVICE=examples.demo_web in docker-compose.yml).
COPY examples ./examples
RUN pip install --no-deps --no-build-isolation . && pip check

# --- runtime: no compilers, no source tree, not root ---------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    SERVICE=auth_server \
    GUNICORN_BIND=0.0.0.0:8000 \
    METRICS_BIND=0.0.0.0:9100

RUN groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid tessera --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tessera

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./

USER tessera:tessera
# 8000: the service. 9100: /metrics, served by the gunicorn master for Prometheus inside the
# network; never publish it (docker-compose.yml does not).
EXPOSE 8000 9100
# SERVICE picks the app: auth_server, resource_server or examples.demo_web. exec: gunicorn is PID 1 and gets
# the SIGTERM of `docker stop` (graceful shutdown, GUNICORN_GRACEFUL_TIMEOUT).
CMD ["sh", "-c", "exec gunicorn -c /app/gunicorn.conf.py \"${SERVICE}.wsgi:app\""]
