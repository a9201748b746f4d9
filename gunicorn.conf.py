"""gunicorn settings for both services (`gunicorn -c gunicorn.conf.py auth_server.wsgi:app`).

Read from the environment so compose, `make run` and the tests start the same way:
GUNICORN_WORKERS (default 2), GUNICORN_WORKER_CONNECTIONS (1000), GUNICORN_APP_SLOTS (4),
GUNICORN_TIMEOUT (30 s), GUNICORN_GRACEFUL_TIMEOUT (20 s), GUNICORN_KEEPALIVE (5 s),
GUNICORN_ACCESS_LOG (0: off; the services log every request themselves),
GUNICORN_MAX_REQUESTS_PER_CONNECTION (100; 0: no limit), GUNICORN_BIND,
PSYCOPG_WAIT_FUNC (wait_c: see below), and the service settings METRICS_BIND (the /metrics
listener) and MAX_REQUEST_BYTES (README "Settings").
"""

import importlib.util
import os
import tempfile

# psycopg 3 waits cooperatively once gevent has patched `select`: every database round trip
# then hands the worker to each other ready greenlet first. A Tessera query is one indexed
# lookup of well under a millisecond, so that hand-off costs more than the wait, and under a
# flood of cheap requests (16 login loops refused with 503) it made one introspection on
# PostgreSQL 56x slower; blocking for the round trip made it 2.4x (docs/benchmarks.md, login
# flood). DB_STATEMENT_TIMEOUT_MS and the connect timeout bound how long a worker can block.
# Set before any worker imports psycopg; only where psycopg's C wait exists.
if importlib.util.find_spec("psycopg_binary") or importlib.util.find_spec("psycopg_c"):
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_c")

from shared.service.settings import ServiceSettings  # noqa: E402

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gevent: one greenlet per connection, so a client that trickles its headers or its body holds
# a greenlet, not one of a few threads. With gthread, 40 such clients took every thread of
# 2 workers x 4 and /healthz waited 20 s (security finding 11; tests/faults/test_slow_clients.py).
# A worker waiting on PostgreSQL (psycopg 3 waits through the patched select), on
# introspection or on Redis serves its other connections meanwhile.
# gevent's worker, accepting a connection only while it holds no more open connections than
# its least loaded sibling: kept-alive connections otherwise piled onto one worker (15 of 16).
worker_class = "shared.service.balanced_worker.BalancedGeventWorker"
# Only gthread workers read this; it is spelled out because tools that describe a deployment
# (the peer benchmark harness among them) read the config file's `threads`.
threads = 1
# Connections (greenlets) per worker; beyond that new connections wait in the listen backlog.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# Requests inside the app at once per worker, each admitted with its whole body read
# (shared/service/serving.py). A request may hold two database connections: keep it at most half of
# DB_POOL_SIZE + DB_MAX_OVERFLOW (15 by default). 4 is what gthread's threads allowed.
app_slots = int(os.environ.get("GUNICORN_APP_SLOTS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# SIGTERM lets requests in flight finish for this long before workers are killed.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# A kept-alive connection is answered `Connection: close` after this many requests. The
# worker that accepted a connection serves it for its whole life, and the busy peers of the
# services (a proxy's pool, the resource server's introspection pool) keep theirs for hours:
# opened at a moment when one worker was busier, they stayed on the other (an AS worker served
# every introspection of a 10 s run while its sibling idled). Reconnecting re-balances them
# (shared/service/balanced_worker.py) for the price of one TCP handshake per this many requests.
max_requests_per_connection = int(os.environ.get("GUNICORN_MAX_REQUESTS_PER_CONNECTION", "100"))
# Refuse absurd request lines and headers before any Python code sees them.
limit_request_line = 8190
limit_request_field_size = 16384
limit_request_fields = 100

# Off by default: gunicorn's access line cost about 8 % of a worker (/healthz +23 % without
# it), and each service already logs every request (method, path, status, duration, request
# id: shared/service/serving.py) on its own logger, in its LOG_FORMAT.
# GUNICORN_ACCESS_LOG=1 adds it.
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "0").lower() in ("1", "true") else None
# %(U)s is the path without the query string, and no request header is logged: tokens and
# credentials never reach the access log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# gunicorn 27's control socket has one default path per user; two services on one host would
# fight over it, and nothing here uses it.
control_socket_disable = True

# prometheus-client multiprocess mode: every worker writes its samples under this directory
# and /metrics aggregates them. One directory per service instance, emptied at start (stale
# files from a previous run would be counted again).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tessera-metrics-")


_service_settings = ServiceSettings()
# /metrics on a listener of its own (METRICS_BIND), never on `bind`: see when_ready.
metrics_bind = _service_settings.metrics_bind


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    from shared.service.balanced_worker import worker_exited

    multiprocess.mark_process_dead(worker.pid)
    worker_exited(worker.age)


def when_ready(server):
    # The master serves the aggregated samples of every worker: it outlives them, so a scrape
    # never lands on a worker that is busy or restarting, and its port is not the public one.
    if metrics_bind:
        from shared.service.metrics import serve_multiprocess_metrics

        serve_multiprocess_metrics(metrics_bind)
        server.log.info("Serving /metrics at http://%s/metrics", metrics_bind)


def pre_request(worker, req):
    # Replaces gunicorn's default, a debug log call per request.
    if max_requests_per_connection and req.req_number >= max_requests_per_connection:
        req.must_close = True


def post_worker_init(worker):
    from shared.service.serving import BufferedApp

    worker.wsgi = BufferedApp(
        worker.wsgi, slots=app_slots, max_body=_service_settings.max_request_bytes
    )
