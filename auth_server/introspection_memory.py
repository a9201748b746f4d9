"""What each worker remembers of the access tokens it introspected, and how a revocation makes
every worker forget at once.

A resource server introspects the same token on every request for the token's few minutes, so
almost every introspection asks again about a token the worker has already read. Remembering
the stored row (`TokenRecord`) turns that into a dict lookup; only the first introspection of a
token reads the database. A new token is never remembered before it has been read, so a token is
known to introspection as soon as it is stored (before the client holds it), as without memory.

What must not be remembered is a token's aliveness after a revocation. Every committed change
that can end a token (the audit events other than `ISSUING_EVENTS`: revocation, logout, sign-out,
password change, disable, delete, reuse detection, ...) advances a *revocation generation*, and
a worker forgets everything when the generation it sees differs from the one its memory was
filled under. There are two generations, and a worker's memory is valid for the pair:

- the host's, a counter in a shared memory-mapped file (`HostGeneration`) that every process of
  this host using this database shares: workers, other instances, the operator CLI. The
  revoking process advances it after its commit and before it answers, and every introspection
  reads it (a few hundred nanoseconds). So on one host a revocation bites on the very next
  introspection, at any worker: exactly as when every introspection read the database.
- the database's, the one row of `revocation_generation`, incremented by the revoking
  transaction itself (its last statement, so it is the last lock that transaction takes and
  cannot deadlock with the user, client, family and token rows taken before). Each worker reads
  it at most every INTROSPECTION_MEMORY_POLL_MS. It carries revocations made on another host
  (another AS instance, a CLI run in another container): those bite within that interval.

An entry is also forgotten after MAX_ENTRY_AGE seconds whatever happens, and the memory holds at
most MAX_ENTRIES tokens (the oldest go first).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from auth_server.audit import AuditTrail
from auth_server.models import RevocationGeneration
from auth_server.store import TokenRecord

log = logging.getLogger(__name__)

# Audit events that end no token (they issue, or refuse, or record): everything else advances
# the generation, so an event added later is on the safe side until it is listed here.
ISSUING_EVENTS = frozenset(
    {
        "login_succeeded",
        "login_failed",
        "token_issued",
        "token_refreshed",
        "issuance_refused_revoked",
        "user_created",
        "client_created",
        "consent_granted",
    }
)

# A resource server's working set is its live tokens; 100,000 entries of a few hundred bytes
# each is tens of MB per worker at most.
MAX_ENTRIES = 100_000
# Belt and braces: even with a lost database increment, nothing is remembered for longer.
MAX_ENTRY_AGE = 60.0

_COUNTER = struct.Struct("=Q")


def advances_generation(event: str) -> bool:
    return event not in ISSUING_EVENTS


class HostGeneration:
    """A 64-bit counter in a file mapped by every process on this host that opens the same path.

    Readers read the mapped page without a lock (an aligned 8-byte read); writers increment under
    an exclusive `flock`. The file is created private (0600) and never followed through a link.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            if os.fstat(fd).st_uid != os.getuid():
                raise PermissionError(f"{path} belongs to another user")
            if os.fstat(fd).st_size < mmap.PAGESIZE:
                os.ftruncate(fd, mmap.PAGESIZE)
            # The mapping keeps a descriptor of its own; ours is closed now, so that a process
            # with many apps (a test suite) does not hold two descriptors per database.
            self._map = mmap.mmap(fd, mmap.PAGESIZE)
        finally:
            os.close(fd)

    @classmethod
    def for_database(cls, database_url: str, directory: str = "") -> HostGeneration:
        """The counter of every process on this host that uses `database_url`."""
        return cls(Path(directory or default_directory()) / generation_file_name(database_url))

    def read(self) -> int:
        value: int = _COUNTER.unpack_from(self._map, 0)[0]
        return value

    def advance(self) -> None:
        # Revocations are rare: the lock's descriptor is opened for each one.
        fd = os.open(self.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _COUNTER.pack_into(self._map, 0, (self.read() + 1) % 2**64)
        finally:
            os.close(fd)  # releases the lock

    def close(self) -> None:
        self._map.close()


def default_directory() -> str:
    # /dev/shm is memory on Linux (and private to a container); elsewhere the temp folder.
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108


def generation_file_name(database_url: str) -> str:
    # The URL without its password names the database; a hash keeps the name short and clean.
    url = make_url(database_url).render_as_string(hide_password=True)
    digest = hashlib.sha256(f"{os.getuid()}:{url}".encode()).hexdigest()[:24]
    return f"tessera-revocation-{digest}.generation"


_READ_DATABASE_GENERATION = select(RevocationGeneration.value).where(RevocationGeneration.id == 1)
_ADVANCE_DATABASE_GENERATION = (
    update(RevocationGeneration)
    .where(RevocationGeneration.id == bindparam("row"))
    .values(value=RevocationGeneration.value + 1)
    .execution_options(synchronize_session=False)
)


def advance_database_generation(session: Session) -> None:
    """In the revoking transaction, as its last statement (see the module docstring)."""
    session.execute(_ADVANCE_DATABASE_GENERATION, {"row": 1})


def read_database_generation(connection: Connection) -> int:
    return connection.scalar(_READ_DATABASE_GENERATION) or 0


@dataclass(frozen=True)
class _Entry:
    record: TokenRecord
    remembered_at: float


class IntrospectionMemory:
    """One worker's remembered access tokens, by token hash, valid for one generation pair."""

    def __init__(
        self,
        host: HostGeneration,
        read_database: Callable[[], int],
        *,
        poll_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        max_age: float = MAX_ENTRY_AGE,
    ) -> None:
        self.host = host
        self._read_database = read_database
        self._poll_seconds = poll_seconds
        self._monotonic = monotonic
        self._max_entries = max_entries
        self._max_age = max_age
        self._entries: dict[str, _Entry] = {}
        self._database_generation: int | None = None
        self._polled_at = float("-inf")
        self._generation: tuple[int, int | None] = (host.read(), None)
        self._poll_lock = threading.Lock()

    def generation(self) -> tuple[int, int | None]:
        """The generation pair now, forgetting everything if it moved. Read it BEFORE reading a
        token from the database and give it to `remember` with what was read."""
        now = self._monotonic()
        if now - self._polled_at >= self._poll_seconds and self._poll_lock.acquire(False):
            try:
                self._database_generation = self._read_database()
                self._polled_at = now
            except Exception as exc:  # noqa: BLE001 - the token read that follows will fail too
                # Unknown: forget, and remember nothing until a poll succeeds.
                self._database_generation = None
                log.warning("could not read the revocation generation: %s", type(exc).__name__)
            finally:
                self._poll_lock.release()
        current = (self.host.read(), self._database_generation)
        if current != self._generation:
            self._entries.clear()
            self._generation = current
        return current

    def recall(self, token_hash: str, generation: tuple[int, int | None]) -> TokenRecord | None:
        if generation != self._generation:
            return None
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if self._monotonic() - entry.remembered_at > self._max_age:
            self._entries.pop(token_hash, None)
            return None
        return entry.record

    def remember(
        self, token_hash: str, record: TokenRecord, generation: tuple[int, int | None]
    ) -> None:
        """Keep `record`, read from the database under `generation`, unless the generation has
        moved since: then the read may predate a revocation and is not kept."""
        if generation != self._generation or generation[1] is None:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.pop(next(iter(self._entries)), None)
        self._entries[token_hash] = _Entry(record, self._monotonic())

    def note_activity(self, token_hash: str, last_active_at: int) -> None:
        """The login's activity was recorded at `last_active_at` (auth_server/activity.py): the
        remembered record must say so, or every later introspection would try again."""
        entry = self._entries.get(token_hash)
        if entry is not None:
            self._entries[token_hash] = _Entry(
                replace(entry.record, family_last_active_at=last_active_at), entry.remembered_at
            )

    def __len__(self) -> int:
        return len(self._entries)


def database_generation_reader(engine: Engine) -> Callable[[], int]:
    def read() -> int:
        with engine.connect() as connection:
            return read_database_generation(connection)

    return read


# Weak: a mapping (and the descriptor it holds) lives as long as an app uses it.
_open_generations: weakref.WeakValueDictionary[Path, HostGeneration] = weakref.WeakValueDictionary()
_open_lock = threading.Lock()


def host_generation(database_url: str, directory: str) -> HostGeneration | None:
    """This host's generation for `database_url`, mapped once per process (every app of a
    process shares the mapping); None, logged, if the file cannot be made."""
    path = Path(directory or default_directory()) / generation_file_name(database_url)
    with _open_lock:
        generation = _open_generations.get(path)
        if generation is None:
            try:
                generation = HostGeneration(path)
            except OSError as exc:
                log.error(
                    "cannot map the revocation generation file %s (%s): introspection reads "
                    "the database every time, and revocations reach other workers only "
                    "through the database",
                    path,
                    exc,
                )
                return None
            _open_generations[path] = generation
        return generation


def install(
    audit_trail: AuditTrail,
    database_url: str,
    reader: Engine,
    *,
    remember: bool,
    directory: str,
    poll_seconds: float,
) -> IntrospectionMemory | None:
    """Make this app's committed revocations advance both generations (always: a process that
    does not remember, such as the CLI, still tells those that do), and return the memory its
    introspections use, or None when `remember` is off or the host file is unavailable."""
    host = host_generation(database_url, directory)

    def in_transaction(session: Session, events: list[str]) -> None:
        if any(advances_generation(event) for event in events):
            advance_database_generation(session)

    def after_commit(event: str, _fields: dict) -> None:
        if host is not None and advances_generation(event):
            host.advance()

    audit_trail.subscribe_before_commit(in_transaction)
    audit_trail.subscribe(after_commit)
    if not remember or host is None:
        return None
    return IntrospectionMemory(host, database_generation_reader(reader), poll_seconds=poll_seconds)
