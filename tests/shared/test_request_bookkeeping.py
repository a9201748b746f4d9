"""shared.service.request_id.RequestBookkeeping with shared.service.metrics: every answer Flask
makes carries the request id and is counted by route template, method and status."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from flask import Flask, abort, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from shared.service import request_id
from shared.service.cors import Cors
from shared.service.metrics import ENDPOINT_KEY, LATENCY_BUCKETS, Metrics
from shared.service.request_id import current_request_id, new_request_id


def _app() -> tuple[Flask, Metrics]:
    app = Flask(__name__)
    metrics = Metrics("test")
    metrics.init_app(app)

    @app.get("/notes/<int:note_id>")
    def note(note_id: int):
        if note_id == 0:
            abort(400)
        return {"id": note_id, "request_id": current_request_id()}

    return app, metrics


def _samples(metrics: Metrics) -> dict[str, float]:
    lines = generate_latest(metrics.registry).decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines)
        if name.startswith(("tessera_http_requests_total{", "tessera_http_request_duration"))
    }


def test_answers_are_counted_by_route_template_method_and_status():
    app, metrics = _app()
    client = app.test_client()
    for path in ("/notes/1", "/notes/2", "/notes/0", "/nowhere"):
        client.get(path)
    client.post("/notes/1")
    samples = _samples(metrics)
    count = 'tessera_http_requests_total{endpoint="%s",method="%s",status="%s"}'
    assert samples[count % ("/notes/<int:note_id>", "GET", "200")] == 2
    assert samples[count % ("/notes/<int:note_id>", "GET", "400")] == 1
    assert samples[count % ("unmatched", "GET", "404")] == 1
    assert samples[count % ("unmatched", "POST", "405")] == 1
    timed = 'tessera_http_request_duration_seconds_count{endpoint="%s",method="GET"}'
    assert samples[timed % "/notes/<int:note_id>"] == 3


def test_the_request_id_is_the_callers_when_safe_and_is_echoed_on_every_answer():
    app, _ = _app()
    client = app.test_client()
    ok = client.get("/notes/3", headers={"X-Request-ID": "trace-1"})
    assert ok.headers["X-Request-ID"] == ok.json["request_id"] == "trace-1"
    missing = client.get("/nowhere", headers={"X-Request-ID": "bad id"})
    assert missing.status_code == 404
    generated = missing.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/notes/3").headers["X-Request-ID"] != generated


def test_a_new_request_id_is_a_uuid4_in_hex():
    ids = {new_request_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_new_request_ids_are_unique_across_threads_and_a_fork():
    """Ids are made several at a time: threads taking them at once never share one, and a
    forked child (a gunicorn worker) makes its own rather than the parent's unused ones."""
    new_request_id()  # the parent now holds unused ids
    taken: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        into.extend(new_request_id() for _ in range(500))

    threads = [threading.Thread(target=take, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_ids = [value for into in taken for value in into]
    assert len(set(all_ids)) == len(all_ids) == 8 * 500
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        childs = pipe.read().split()
    os.waitpid(pid, 0)
    parents = [new_request_id() for _ in range(10)]
    assert len(childs) == 10 and not set(childs) & set(parents)


def test_a_cors_preflight_answered_by_a_hook_is_echoed_and_counted_too():
    """A before-request hook's answer (here the CORS preflight) ends Flask's hooks early; the
    bookkeeping around Flask still echoes the id and counts it."""
    app, metrics = _app()
    Cors(
        applies=lambda path: path.startswith("/notes/"),
        allowed_origins=lambda: {"https://app.example"},
        methods=("GET",),
    ).init_app(app)
    preflight = app.test_client().options(
        "/notes/1",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "X-Request-ID": "pre-1",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["X-Request-ID"] == "pre-1"
    count = 'tessera_http_requests_total{endpoint="%s",method="OPTIONS",status="204"}'
    assert _samples(metrics)[count % "/notes/<int:note_id>"] == 1


def test_a_request_moves_the_same_samples_as_counter_inc_and_histogram_observe():
    """count_request writes to the counter's and the histogram's values directly (found once per
    route, method and status); every duration lands where observe() puts it, bounds included."""
    metrics = Metrics("test")
    reference = CollectorRegistry()
    requests = Counter(
        "tessera_http_requests_total", "", ["endpoint", "method", "status"], registry=reference
    )
    latency = Histogram(
        "tessera_http_request_duration_seconds",
        "",
        ["endpoint", "method"],
        registry=reference,
        buckets=LATENCY_BUCKETS,
    )
    durations = [0.0, 0.0004, *LATENCY_BUCKETS, 0.0010000001, 7.5, 10.5, 3600.0]
    for status in ("200", "404"):
        for seconds in durations:
            environ = {ENDPOINT_KEY: "/notes/<int:note_id>", "REQUEST_METHOD": "get"}
            metrics.count_request(environ, status, seconds)
            requests.labels("/notes/<int:note_id>", "GET", status).inc()
            latency.labels("/notes/<int:note_id>", "GET").observe(seconds)

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {
            name: float(value)
            for name, _, value in (line.rpartition(" ") for line in lines)
            if name.startswith("tessera_http_") and "_created" not in name
        }

    expected = samples(reference)
    assert samples(metrics.registry) == expected
    assert expected[
        'tessera_http_requests_total{endpoint="/notes/<int:note_id>",method="GET",status="404"}'
    ] == len(durations)


def test_headers_put_on_every_answer_replace_the_apps_own_whatever_made_the_answer():
    app, _ = _app()

    @app.get("/cached")
    def cached():
        return "x", 200, {"cache-control": "public, max-age=60", "Pragma": "x", "X-Other": "1"}

    request_id.init_app(app).put_on_every_answer(
        {"Cache-Control": "no-store", "Pragma": "no-cache"}
    )
    client = app.test_client()
    for response in (client.get("/cached"), client.get("/notes/1"), client.get("/nowhere")):
        headers = response.headers
        assert headers.getlist("Cache-Control") == ["no-store"], response.status_code
        assert headers.getlist("Pragma") == ["no-cache"]
        assert list(headers.keys())[-1] == "X-Request-ID"
    assert client.get("/cached").headers["X-Other"] == "1"


def test_errors_are_counted_under_their_route_even_when_an_after_request_hook_fails():
    """The route is noted as Flask starts its answer, whatever made it: a view that raised, a
    hook that raised after the view, an error handler."""
    app, metrics = _app()

    @app.get("/fails/<name>")
    def fails(name: str):
        raise RuntimeError(name)

    @app.after_request
    def broken_for_notes(response):
        if request.path == "/notes/7":
            raise RuntimeError("hook")
        return response

    client = app.test_client()
    assert client.get("/fails/x").status_code == 500
    assert client.get("/notes/7").status_code == 500
    count = 'tessera_http_requests_total{endpoint="%s",method="GET",status="500"}'
    assert _samples(metrics)[count % "/fails/<name>"] == 1
    assert _samples(metrics)[count % "/notes/<int:note_id>"] == 1


def _http_samples(registry: CollectorRegistry) -> dict[str, float]:
    lines = generate_latest(registry).decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines)
        if name.startswith("tessera_http_") and "_created" not in name
    }


@pytest.fixture
def multiprocess_mode(tmp_path, monkeypatch):
    """prometheus_client as in a gunicorn worker: values in this process's files in tmp_path."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    yield tmp_path
    values.close_all_multiprocess_files()


def _files_of(directory) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry


def test_in_multiprocess_mode_every_request_reaches_the_files_as_inc_and_observe_put_it(
    multiprocess_mode, monkeypatch
):
    """In a worker the request samples are written to the process's file directly; what the
    files hold is what Counter.inc() and Histogram.observe() would have put there, also while
    the files grow (their map is replaced) and other metrics write to them."""
    requests = [
        (f"/route/{n}/" + "x" * 100, status, seconds)  # each route: 15 more histogram values
        for n in range(60)
        for status, seconds in (("200", 0.0004 * n), ("404", 0.01), ("200", 2.5))
    ]
    reference = CollectorRegistry()
    with monkeypatch.context() as in_one_process:
        in_one_process.setattr(values, "ValueClass", values.MutexValue)
        with_inc = Counter(
            "tessera_http_requests_total", "", ["endpoint", "method", "status"], registry=None
        )
        with_observe = Histogram(
            "tessera_http_request_duration_seconds",
            "",
            ["endpoint", "method"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        for endpoint, status, seconds in requests:
            with_inc.labels(endpoint, "POST", status).inc()
            with_observe.labels(endpoint, "POST").observe(seconds)
    reference.register(with_inc)
    reference.register(with_observe)
    metrics = Metrics("test")
    other = metrics.counter("other_total", "", ["n"])
    for n, (endpoint, status, seconds) in enumerate(requests):
        metrics.count_request({ENDPOINT_KEY: endpoint, "REQUEST_METHOD": "POST"}, status, seconds)
        other.labels(str(n)).inc()
    assert (multiprocess_mode / f"histogram_{os.getpid()}.db").stat().st_size > 64 * 1024
    assert _http_samples(_files_of(multiprocess_mode)) == _http_samples(reference)
    assert _http_samples(metrics.registry) == _http_samples(reference)


def test_a_forked_child_counts_in_files_of_its_own(multiprocess_mode):
    metrics = Metrics("test")
    environ = {ENDPOINT_KEY: "/healthz", "REQUEST_METHOD": "GET"}
    metrics.count_request(environ, "200", 0.001)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit status
        try:
            metrics.count_request(environ, "200", 0.001)
            metrics.count_request(environ, "200", 0.001)
            os._exit(0)
        finally:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    metrics.count_request(environ, "200", 0.001)
    count = 'tessera_http_requests_total{endpoint="/healthz",method="GET",status="200"}'
    assert _http_samples(_files_of(multiprocess_mode))[count] == 4
    assert (multiprocess_mode / f"counter_{child}.db").exists()
    parent_file = multiprocess_mode / f"counter_{os.getpid()}.db"
    in_parent_file = [
        value
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(parent_file))
        if "tessera_http_requests_total" in key
    ]
    assert in_parent_file == [2.0]
