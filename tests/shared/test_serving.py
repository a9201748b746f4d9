"""shared.service.serving.BufferedApp: the app sees a request only with its whole body read, and at
most `slots` requests run in it at once (the slow-client and pool behaviour under gunicorn is
proved live in tests/faults/test_slow_clients.py and
tests/end_to_end/test_refresh_races_under_gunicorn.py)."""

from __future__ import annotations

import io
import threading
import time

from shared.service.serving import BufferedApp


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
