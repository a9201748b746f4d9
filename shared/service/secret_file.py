"""A secret kept in a file that is rewritten when the secret rotates (a mounted Kubernetes or
Docker secret, a file a secret manager's agent renders), picked up without a restart.

`current()` costs one stat(): the file is read again only when its modification time, size or
inode changed. `reload()` reads it whatever the stat says, for a caller whose secret was just
refused (a rewrite within the file system's timestamp granularity keeps the same stat). The
value is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("tessera.secret_file")


class SecretFileError(ValueError):
    """The file is missing, unreadable or empty."""


class SecretFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""
        self._value, self._stamp = self._read()

    def current(self) -> str:
        try:
            stamp = self._stat()
        except OSError:
            # Between the unlink and the rename of an atomic replace, or a transient mount
            # problem: the last good secret is the best guess.
            return self._value
        if stamp != self._stamp:
            self._refresh()
        return self._value

    def reload(self) -> bool:
        """Read the file now; True if the secret changed."""
        return self._refresh()

    def _refresh(self) -> bool:
        with self._lock:
            try:
                value, stamp = self._read()
            except (OSError, SecretFileError) as exc:
                log.warning("keeping the previous secret: cannot read %s: %s", self.path, exc)
                # Not again on every request (nor its warning) until the file changes again.
                with contextlib.suppress(OSError):
                    self._stamp = self._stat()
                return False
            changed = value != self._value
            self._value, self._stamp = value, stamp
        if changed:
            log.info("read a new secret from %s", self.path)
        return changed

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> tuple[str, tuple[int, int, int]]:
        # Stat first: a rewrite between the two is then seen again by the next current().
        stamp = self._stat()
        value = self.path.read_text(encoding="utf-8").strip()
        if not value:
            raise SecretFileError(f"{self.path} is empty")
        return value, stamp
