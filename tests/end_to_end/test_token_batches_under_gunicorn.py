"""Group commit of client_credentials tokens in the worker that deployments run (gunicorn's
gevent worker, where psycopg blocks the worker for every other query): requests that arrive
while a token statement is in flight must be able to run and join the next statement.

The metrics say how many statements carried how many tokens. With the write blocking its
worker (the defect this guards against), no other request could run meanwhile and every
statement carried exactly one token."""

from __future__ import annotations

import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import DEMO_APP

pytestmark = pytest.mark.slow
CLIENTS = 12
TOKENS_EACH = 15


def _counter(metrics_url: str, name: str) -> float:
    text = requests.get(metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} is not in /metrics")


def test_tokens_requested_together_share_statements_in_a_gevent_worker(
    gunicorn_auth, database_backend
):
    if database_backend != "postgresql":
        pytest.skip("tokens are group-committed on PostgreSQL; SQLite writes one at a time")
    # Stored client_credentials tokens: self-contained ones write no token row to batch.
    auth = gunicorn_auth(workers=1, client_credentials_tokens="stored")
    barrier = threading.Barrier(CLIENTS)
    failures: list[str] = []

    def client() -> None:
        with requests.Session() as http:
            barrier.wait()
            for _ in range(TOKENS_EACH):
                response = http.post(
                    f"{auth.url}/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=DEMO_APP,
                    timeout=10,
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    statements = _counter(auth.server.metrics_url, "tessera_token_batches_total")
    rows = _counter(auth.server.metrics_url, "tessera_token_batch_rows_total")
    assert rows == CLIENTS * TOKENS_EACH
    # 12 clients at once against one worker: most statements must carry several tokens.
    assert statements < rows * 0.8, (statements, rows)
