"""gunicorn's response, writing its headers together with the first part of the body.

gunicorn sends a response's head and its body with two `send` calls. On a kept-alive connection
each is a TCP segment, and answering a small JSON body that way costs about twice the kernel
work of one (on loopback the sender's `send` also runs the receiver's side; a worker spent most
of an introspection in those two calls). Holding the head until the first body bytes, or the
end of the response, makes it one call; nothing else about the response changes.
"""

from __future__ import annotations

from typing import Any

from gunicorn import util
from gunicorn.http import wsgi


class CoalescingResponse(wsgi.Response):  # type: ignore[misc]  # gunicorn ships no types
    headers_sent: bool
    chunked: bool
    _held: bytes | None = None

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self._held = util.to_bytestring("{}\r\n".format("".join(lines)), "latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        held, self._held = self._held, None
        if held is not None and not self.chunked:
            util.write(self.sock, held + data)
            return
        if held is not None:
            util.write(self.sock, held)
        super()._emit_body(data)

    def flush_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            util.write(self.sock, held)

    def close(self) -> None:
        # A response without body bytes (HEAD, 204, 304, an empty body) ends here.
        if not self.headers_sent:
            self.send_headers()
        self.flush_held()
        super().close()

    def sendfile(self, respiter: Any) -> Any:
        if self.cfg.is_ssl or not self.can_sendfile():
            return False
        # gunicorn's sendfile sends the head first, then the file from the kernel.
        if not self.headers_sent:
            self.send_headers()
        self.flush_held()
        return super().sendfile(respiter)


def install() -> None:
    """Make this worker process answer with CoalescingResponse: gunicorn's `wsgi.create`
    builds each response from the module's `Response` name."""
    wsgi.Response = CoalescingResponse
