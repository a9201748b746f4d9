"""shared.service.serving.BufferedApp: the app sees a request only with its whole body read, and at
most `slots` requests run in it at once (the slow-client and pool behaviour under gunicorn is
proved live in tests/faults/test_slow_clients.py and
tests/end_to_end/test_refresh_races_under_gunicorn.py)."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time

import pytest

from shared.service import serving
from shared.service.logging import configure_logging, sole_json_handler
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


@pytest.mark.parametrize("request_id", ["rid-8", None])
def test_the_request_line_written_directly_is_the_line_the_logging_tree_writes(request_id):
    """With the service's JSON handler alone on `tessera`, the request line skips the LogRecord
    and the logging tree (shared/service/logging.py, write_info_line); a filter on `tessera`
    sends it through them. Both write the same JSON, field for field and in the same order."""
    configure_logging("INFO", "json")
    tessera = logging.getLogger("tessera")
    # Only the service's handler (pytest's own capture handlers may be there too).
    [handler] = [h for h in tessera.handlers if getattr(h, "_tessera", False)]
    stream = io.StringIO()
    previous_stream, previous_handlers = handler.setStream(stream), tessera.handlers
    tessera.handlers = [handler]
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/oauth/token", "QUERY_STRING": "x=1"}
    try:
        assert sole_json_handler(serving.request_log) is handler
        serving._log_request(environ, "201", request_id, 0.0123456)
        passing = logging.Filter()  # lets everything through, but is one more thing to see it
        tessera.addFilter(passing)
        try:
            assert sole_json_handler(serving.request_log) is None
            serving._log_request(environ, "201", request_id, 0.0123456)
        finally:
            tessera.removeFilter(passing)
    finally:
        handler.setStream(previous_stream)
        tessera.handlers = previous_handlers
    direct, through_logging = (json.loads(line) for line in stream.getvalue().splitlines())
    for entry in (direct, through_logging):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("ts"))
    assert list(direct.items()) == list(through_logging.items())
    assert direct["msg"] == f"POST /oauth/token 201 12.35ms rid={request_id}"
    assert (direct["status"], direct["duration_ms"]) == (201, 12.35)
    assert direct["request_id"] == request_id
