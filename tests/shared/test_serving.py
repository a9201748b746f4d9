"""shared.service.serving.BufferedApp: the app sees a request only with its whole body read, and at
most `slots` requests run in it at once (the slow-client and pool behaviour under gunicorn is
proved live in tests/faults/test_slow_clients.py and
tests/end_to_end/test_refresh_races_under_gunicorn.py)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask import request as flask_request

from shared.service import serving
from shared.service.logging import configure_logging, sole_json_handler
from shared.service.request_id import ENVIRON_KEY
from shared.service.serving import BufferedApp, FairSlots


class RecordingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def _echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(body)).encode()]


def _call(app, environ) -> bytes:
    return b"".join(app(environ, lambda status, headers: None))


def test_the_body_is_read_before_the_app_runs_and_replaced_by_a_buffer():
    stream = RecordingStream(b"grant_type=client_credentials")
    seen = {}

    def app(environ, start_response):
        seen["reads_before_app"] = stream.reads
        seen["input"] = environ["wsgi.input"]
        return _echo(environ, start_response)

    wrapped = BufferedApp(app, slots=1, max_body=1024)
    answer = _call(wrapped, {"CONTENT_LENGTH": "29", "wsgi.input": stream})
    assert answer == b"29"
    assert seen["reads_before_app"] >= 1
    assert seen["input"] is not stream


def test_a_body_announced_larger_than_the_limit_is_left_unread_for_the_app_to_refuse():
    stream = RecordingStream(b"x" * 10)
    wrapped = BufferedApp(lambda environ, start_response: [b""], slots=1, max_body=1024)
    _call(wrapped, {"CONTENT_LENGTH": "2048", "wsgi.input": stream})
    assert stream.reads == 0


def test_a_chunked_body_is_read_one_byte_past_the_limit_at_most():
    stream = RecordingStream(b"x" * 5000)
    wrapped = BufferedApp(_echo, slots=1, max_body=1024)
    answer = _call(wrapped, {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": stream})
    assert answer == b"1025"


def test_a_body_cut_short_reaches_the_app_as_it_arrived():
    stream = RecordingStream(b"abc")  # the client announced 10 bytes, then went away
    wrapped = BufferedApp(_echo, slots=1, max_body=1024)
    assert _call(wrapped, {"CONTENT_LENGTH": "10", "wsgi.input": stream}) == b"3"


def test_at_most_slots_requests_run_in_the_app_at_once_and_the_response_is_closed():
    inside, most, lock = [0], [0], threading.Lock()
    release = threading.Event()
    closed = []

    class Response(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        release.wait(5)
        with lock:
            inside[0] -= 1
        return Response([b"ok"])

    wrapped = BufferedApp(app, slots=2, max_body=1024)
    callers = [
        threading.Thread(target=_call, args=(wrapped, {"wsgi.input": io.BytesIO()}))
        for _ in range(5)
    ]
    for caller in callers:
        caller.start()
    # Two are inside and the other three queue on the slots; nothing lets more in until
    # `release`, so waiting for two to be inside and then letting all go is enough.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with lock:
            if inside[0] == 2:
                break
        time.sleep(0.01)
    release.set()
    for caller in callers:
        caller.join(10)
    assert most[0] == 2
    assert len(closed) == 5


def test_every_request_is_logged_with_status_duration_and_request_id_but_not_its_query(caplog):
    def app(environ, start_response):
        start_response("404 NOT FOUND", [("X-Request-ID", "rid-7"), ("Content-Type", "text/plain")])
        return [b"no"]

    wrapped = BufferedApp(app, slots=1, max_body=1024)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/me",
        "QUERY_STRING": "access_token=secret-token-value",
        "wsgi.input": io.BytesIO(b""),
    }
    with caplog.at_level("INFO", logger="tessera.request"):
        _call(wrapped, environ)
    [record] = [r for r in caplog.records if r.name == "tessera.request"]
    assert (record.method, record.path, record.status, record.request_id) == (
        "GET",
        "/api/me",
        404,
        "rid-7",
    )
    assert record.duration_ms >= 0
    assert "rid-7" in record.getMessage() and "404" in record.getMessage()
    assert "secret-token-value" not in record.getMessage()


def test_a_request_whose_app_raises_is_logged_as_500(caplog):
    def app(environ, start_response):
        raise RuntimeError("boom")

    wrapped = BufferedApp(app, slots=1, max_body=1024)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/oauth/token", "wsgi.input": io.BytesIO()}
    with caplog.at_level("INFO", logger="tessera.request"), pytest.raises(RuntimeError):
        _call(wrapped, environ)
    [record] = [r for r in caplog.records if r.name == "tessera.request"]
    assert (record.path, record.status, record.request_id) == ("/oauth/token", 500, None)


def _wait_for(condition, deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_a_freed_slot_goes_to_the_longest_waiter_never_to_a_newcomer():
    slots = FairSlots(1)
    order: list[str] = []

    def request(name: str) -> None:
        with slots:
            order.append(name)

    slots.__enter__()  # this test holds the only slot
    first = threading.Thread(target=request, args=("first",))
    first.start()
    _wait_for(lambda: len(slots._waiters) == 1)
    second = threading.Thread(target=request, args=("second",))
    second.start()
    _wait_for(lambda: len(slots._waiters) == 2)
    slots.__exit__(None, None, None)
    # Handed over, not freed: a request arriving now queues behind the two.
    assert slots._free == 0
    first.join(timeout=5)
    second.join(timeout=5)
    assert order == ["first", "second"]
    assert slots._free == 1


@contextlib.contextmanager
def _service_handler_alone() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    """The service's JSON handler alone on `tessera` (pytest's own capture handlers may be
    there too), writing into a buffer."""
    configure_logging("INFO", "json")
    tessera = logging.getLogger("tessera")
    [handler] = [h for h in tessera.handlers if getattr(h, "_tessera", False)]
    stream = io.StringIO()
    previous_stream, previous_handlers = handler.setStream(stream), tessera.handlers
    tessera.handlers = [handler]
    try:
        yield handler, stream
    finally:
        handler.setStream(previous_stream)
        tessera.handlers = previous_handlers


def _direct_and_through_logging(
    environ: dict, status: str, request_id: str | None, seconds: float
) -> tuple[str, str]:
    """The request line written directly, and the one the logging tree writes for the same
    request (a filter on `tessera` sends it there), as raw text."""
    with _service_handler_alone() as (handler, stream):
        assert sole_json_handler(serving.request_log) is handler
        serving._log_request(environ, status, request_id, seconds)
        passing = logging.Filter()  # lets everything through, but is one more thing to see it
        logging.getLogger("tessera").addFilter(passing)
        try:
            assert sole_json_handler(serving.request_log) is None
            serving._log_request(environ, status, request_id, seconds)
        finally:
            logging.getLogger("tessera").removeFilter(passing)
    direct, through_logging = stream.getvalue().splitlines()
    return direct, through_logging


def _without_ts(line: str) -> str:
    entry = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    return re.sub(r'^\{"ts": "[^"]*"', "", line)


@pytest.mark.parametrize("request_id", ["rid-8", None])
def test_the_request_line_carries_method_path_status_duration_and_request_id(request_id):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/oauth/token", "QUERY_STRING": "x=1"}
    direct, _ = _direct_and_through_logging(environ, "201", request_id, 0.0123456)
    entry = json.loads(direct)
    assert list(entry) == [
        "ts",
        "level",
        "logger",
        "msg",
        *(["request_id"] if request_id else []),
        "method",
        "path",
        "status",
        "duration_ms",
        *([] if request_id else ["request_id"]),
    ]
    assert (entry["level"], entry["logger"]) == ("INFO", "tessera.request")
    assert entry["msg"] == f"POST /oauth/token 201 12.35ms rid={request_id}"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/oauth/token", 201)
    assert (entry["duration_ms"], entry["request_id"]) == (12.35, request_id)


@pytest.mark.parametrize(
    ("method", "path", "status", "request_id", "seconds"),
    [
        ("GET", "/healthz", "200", "0123456789abcdef0123456789abcdef", 0.000412),
        ("POST", "/oauth/token", "503", None, 1.5),
        ("GET", "/api/me", "401", "", 0.0),
        # Everything JSON escapes: quotes, backslashes, control characters, non-ASCII (a
        # percent-decoded path reaches WSGI as latin-1), a character beyond the BMP.
        ("GET", '/a"b\\c\n\t\x00\x7f/\xe9\u2028/\U0001f600', "404", 'r"id\\1', 12.345678),
        ("M\u00e9THOD", "", "0xx", "rid", 100.0),
        ("GET", "/x", "007", "rid", 1e-9),
        # What a format would take for its own: a path is put in the line's format once.
        ("GET", "/%s%d%%/%sms rid=%s", "200", "rid-%s", 0.5),
    ],
)
def test_the_request_line_written_directly_is_the_line_the_logging_tree_writes(
    method, path, status, request_id, seconds
):
    """With the service's JSON handler alone on `tessera`, the request line is made without a
    LogRecord and the logging tree (shared/service/serving.py, _json_line); a filter on
    `tessera` sends it through them. Both write the same text, byte for byte but the time."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path}
    direct, through_logging = _direct_and_through_logging(environ, status, request_id, seconds)
    assert _without_ts(direct) == _without_ts(through_logging)


def test_a_request_line_written_while_a_flask_request_is_served_is_the_logging_trees_too():
    """Inside a Flask request the formatter puts that request's id among its own fields, and a
    falsy request id of the line then replaces it there."""
    app = Flask(__name__)
    with app.test_request_context():
        flask_request.environ[ENVIRON_KEY] = "served-1"
        for rid in (None, ""):
            direct, through_logging = _direct_and_through_logging(
                {"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, "200", rid, 0.001
            )
            assert _without_ts(direct) == _without_ts(through_logging)
            assert list(json.loads(direct))[4] == "request_id"


_CONCURRENT_LINES = """
from gevent import monkey

monkey.patch_all()

import _thread
import logging

import gevent

from shared.service import serving
from shared.service.logging import configure_logging

configure_logging("INFO", "json")
[handler] = logging.getLogger("tessera").handlers
assert type(handler.lock) is _thread.RLock, handler.lock


def lines(who):
    for n in range(200):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/" + who + "/" + "x" * (n % 50)}
        serving._log_request(environ, "200", f"{who}-{n}", 0.001)
        if n % 10 == 0:
            gevent.sleep(0)


pool = gevent.get_hub().threadpool  # real OS threads
threads = [pool.spawn(lines, f"thread{i}") for i in range(4)]
greenlets = [gevent.spawn(lines, f"greenlet{i}") for i in range(8)]
gevent.joinall(greenlets)
for thread in threads:
    thread.get()
"""


@pytest.mark.live  # runs python under gevent in a subprocess: this test run is not patched
def test_request_lines_from_greenlets_and_os_threads_at_once_are_whole_lines(tmp_path):
    """The service's handler takes the interpreter's own RLock even under gevent: OS threads and
    greenlets logging at once still write one whole JSON line each."""
    result = subprocess.run(
        [sys.executable, "-c", _CONCURRENT_LINES],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(entries) == 12 * 200
    assert len({entry["request_id"] for entry in entries}) == 12 * 200


def test_request_lines_of_many_paths_are_each_right_and_their_formats_are_not_all_kept():
    """The line's format is made once per method, path and status; a client sending ever new
    paths gets each line right, and the formats kept stay bounded."""
    with _service_handler_alone() as (_, stream):
        for n in range(serving._LINE_FORMATS_KEPT + 100):
            serving._log_request({"REQUEST_METHOD": "GET", "PATH_INFO": f"/p{n}"}, "200", "r", 0.1)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["path"] for entry in lines] == [
        f"/p{n}" for n in range(serving._LINE_FORMATS_KEPT + 100)
    ]
    assert all(entry["msg"] == f"GET {entry['path']} 200 100.0ms rid=r" for entry in lines)
    assert len(serving._line_formats) <= serving._LINE_FORMATS_KEPT


@pytest.mark.parametrize(
    "seconds", [0.0, 1e-9, 0.000004, 0.000005, 0.000412, 0.0055, 0.01, 0.1, 1.0, 12.345678, 86400.5]
)
def test_the_duration_is_written_as_the_float_of_its_milliseconds_to_two_decimals(seconds):
    """The direct line counts hundredths of a millisecond and writes them as repr() writes the
    float (5.5, not 5.50; 0.0 for nothing), as the logging tree's line does."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}
    direct, through_logging = _direct_and_through_logging(environ, "200", "rid-1", seconds)
    assert _without_ts(direct) == _without_ts(through_logging)
    entry = json.loads(direct)
    assert entry["duration_ms"] == round(seconds * 100_000) / 100
    assert f" {entry['duration_ms']!r}ms rid=rid-1" in entry["msg"]
    for hundredths in (*range(1000), 10**15 - 1, 10**15, 10**17 + 3):
        assert serving._duration_text(hundredths) == repr(hundredths / 100)


def test_the_request_bookkeepings_own_id_is_written_as_it_is_and_any_other_escaped():
    """An id that is the environ's (the bookkeeping chose it: nothing in it needs escaping) is
    put in the line as it is; any other is escaped, even one equal to it."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", ENVIRON_KEY: "rid-2"}
    direct, through_logging = _direct_and_through_logging(environ, "200", "rid-2", 0.001)
    assert json.loads(direct)["request_id"] == "rid-2"
    assert _without_ts(direct) == _without_ts(through_logging)
    unsafe = 'r"\\\n'
    environ[ENVIRON_KEY] = "".join(unsafe)  # equal, but not the same object
    direct, through_logging = _direct_and_through_logging(environ, "200", unsafe, 0.001)
    assert json.loads(direct)["request_id"] == unsafe
    assert _without_ts(direct) == _without_ts(through_logging)


@pytest.mark.parametrize("buffering", ["line", "write_through", "buffered"])
def test_a_request_line_reaches_the_file_whatever_the_streams_buffering(buffering):
    """A line-buffered or write-through stream (what Python makes sys.stderr) passes the line on
    in write(); any other stream is flushed after it."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding="utf-8",
        line_buffering=buffering == "line",
        write_through=buffering == "write_through",
    )
    with _service_handler_alone() as (handler, _):
        handler.setStream(stream)
        serving._log_request({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, "200", "r", 0.001)
        assert json.loads(raw.getvalue())["msg"] == "GET /x 200 1.0ms rid=r"
