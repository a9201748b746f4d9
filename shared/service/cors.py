"""CORS (the Fetch standard's CORS protocol) for the endpoints browser apps call directly.

Only listed origins get `Access-Control-Allow-Origin` (their own origin, never `*`), and never
`Access-Control-Allow-Credentials`: a browser app sends its token itself, no cookie rides along.
A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin, for an allowed
method and headers, gets 204 with the allowances; any other preflight gets 403 without them,
and the browser then never sends the request. Responses vary by Origin, so no cache hands one
origin's answer to another.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from urllib.parse import urlsplit

from flask import Flask, Request, Response, request

PREFLIGHT_MAX_AGE = 600


def origin_of(uri: str) -> str | None:
    """The serialized origin (RFC 6454 §6.2) of an absolute http(s) URI: scheme://host[:port],
    the default port left out, as browsers send it in `Origin`. None if it has none."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def parse_origins(text: str) -> frozenset[str]:
    """A list of origins (space or comma separated), each exactly an origin: no path, query,
    wildcard or `null`. ValueError names the first that is not."""
    origins = set()
    for item in text.replace(",", " ").split():
        origin = origin_of(item)
        if origin is None or origin != item.rstrip("/").lower():
            raise ValueError(f"{item!r} is not an origin like https://app.example.com")
        origins.add(origin)
    return frozenset(origins)


class Cors:
    """CORS for the requests `applies(path)` selects, allowing the origins that
    `allowed_origins()` returns (called only for requests that carry an Origin)."""

    def __init__(
        self,
        applies: Callable[[str], bool],
        allowed_origins: Callable[[], Collection[str]],
        *,
        methods: Iterable[str],
        headers: Iterable[str] = (),
        expose: Iterable[str] = (),
    ):
        self.applies = applies
        self.allowed_origins = allowed_origins
        self.methods = tuple(methods)
        self.headers = tuple(h.lower() for h in headers)
        self.expose = tuple(expose)

    def init_app(self, app: Flask) -> None:
        # First of the request hooks: a preflight is answered before anything asks for a token.
        app.before_request_funcs.setdefault(None, []).insert(0, self._preflight)
        app.after_request(self._annotate)

    def _allowed(self, req: Request) -> str | None:
        origin = req.headers.get("Origin")
        if not origin or not self.applies(req.path):
            return None
        return origin if origin in self.allowed_origins() else None

    @staticmethod
    def _is_preflight(req: Request) -> bool:
        return req.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in req.environ

    # Both hooks run for every request of the app, most of which CORS does not concern: each
    # reads the request through one lookup of the proxy (`request.x` is three Python calls).

    def _preflight(self) -> Response | None:
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        if req.method != "OPTIONS":  # the test _is_preflight starts with, without its call
            return None
        if not self._is_preflight(req) or not req.headers.get("Origin"):
            return None
        if not self.applies(req.path):
            return None
        origin = self._allowed(req)
        method = req.headers["Access-Control-Request-Method"]
        asked = req.headers.get("Access-Control-Request-Headers", "")
        headers = [h.strip().lower() for h in asked.split(",") if h.strip()]
        if origin is None or method not in self.methods or not set(headers) <= set(self.headers):
            refused = Response("This origin, method or header is not allowed.\n", 403)
            refused.headers["Vary"] = "Origin"
            refused.mimetype = "text/plain"
            return refused
        response = Response(status=204)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = ", ".join(self.methods)
        if self.headers:
            response.headers["Access-Control-Allow-Headers"] = ", ".join(self.headers)
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
        response.headers["Vary"] = "Origin"
        return response

    def _annotate(self, response: Response) -> Response:
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        # A preflight's answer is complete as _preflight made it (a refusal stays one).
        if not self.applies(req.path) or self._is_preflight(req):
            return response
        response.vary.add("Origin")
        origin = self._allowed(req)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            if self.expose:
                response.headers["Access-Control-Expose-Headers"] = ", ".join(self.expose)
        return response
