"""A small threaded TCP forwarder that fault tests put between a service and its database.

    proxy = TcpProxy(5432).start()          # 127.0.0.1:<free port> -> 127.0.0.1:5432
    url = proxy.rewrite(database_url)       # the same URL, through the proxy
    proxy.cut()                             # the database is gone: live connections reset,
                                            # new ones refused
    proxy.cut(mode="blackhole")             # ... or accepted and never answered (a dead host)
    proxy.restore()                         # forwarding again, on the same port

Each forwarded connection gets one thread per direction; fault tests open a few dozen at most.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time

from sqlalchemy.engine import make_url

REFUSE = "refuse"
BLACKHOLE = "blackhole"


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN, like a crashed peer or a dropped route.

    A thread blocked in recv() keeps the socket alive past close(); shutting down the read
    side first wakes it, so the RST goes out now rather than at the peer's next packet.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = port
        self.accepted = 0  # connections forwarded so far, for tests that want to know
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._mode: str | None = None  # None: forwarding; else REFUSE or BLACKHOLE
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._held: list[socket.socket] = []  # accepted while blackholed, never answered
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def rewrite(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by this proxy's."""
        url = make_url(database_url).set(host=self.host, port=self.port)
        return url.render_as_string(hide_password=False)

    def cut(self, mode: str = REFUSE) -> None:
        """Reset every live connection. New ones are refused (REFUSE: the database process is
        gone) or accepted and left unanswered (BLACKHOLE: the host stopped answering)."""
        if mode not in (REFUSE, BLACKHOLE):
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self._mode = mode
            pairs, self._pairs = self._pairs, set()
            if mode == REFUSE and self._listener is not None:
                # shutdown() stops the listening at once (close() alone would wait for the
                # accept loop's select() to let go) and resets what sat in its accept queue.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)

    def restore(self) -> None:
        """Forward again, on the same port; connections held by a blackhole are reset."""
        with self._lock:
            self._mode = None
            held, self._held = self._held, []
        for sock in held:
            _reset(sock)
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stopped.set()
        self.cut()
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            _reset(sock)
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):
            try:
                listener.bind((self.host, self.port))
                break
            except OSError:
                # The accept loop's select() may hold the old listener for a moment.
                if attempt == 49 or not self.port:
                    listener.close()
                    raise
                time.sleep(0.02)
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stopped.wait(0.02)
                continue
            try:
                readable, _, _ = select.select([listener], [], [], 0.05)
                if not readable:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                continue  # closed by cut() under our feet
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        with self._lock:
            mode = self._mode
            if mode == BLACKHOLE:
                self._held.append(client)
                return
        if mode == REFUSE:
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (client, upstream)
        with self._lock:
            if self._mode is not None:  # cut while we were connecting
                _reset(client)
                _reset(upstream)
                return
            self._pairs.add(pair)
            self.accepted += 1
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pump, args=(pair, source, sink), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(self, pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            ours = pair in self._pairs
            self._pairs.discard(pair)
        if ours:
            # A clean end on one side: pass the close on and drop the pair.
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
