"""IntrospectionMemory and HostGeneration (auth_server/introspection_memory.py) alone: when a
worker may answer from memory and when it must read the database again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from auth_server.introspection_memory import (
    HostGeneration,
    IntrospectionMemory,
    advances_generation,
)
from auth_server.store import TokenRecord
from tests.support import FakeClock

RECORD = TokenRecord(
    kind="access_token",
    client_pk=1,
    client_id="app",
    user_pk=1,
    username="alice",
    subject="sub",
    scope="profile",
    audience="urn:tessera:notes",
    issued_at=0,
    expires_at=10**10,
    revoked=False,
    jti="jti-1",
    family_id=7,
    family_last_active_at=100,
)


class DatabaseGeneration:
    """The database's counter, with the number of times it was read."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.fail = False

    def __call__(self) -> int:
        self.reads += 1
        if self.fail:
            raise OSError("database down")
        return self.value


@pytest.fixture
def host(tmp_path):
    return HostGeneration(tmp_path / "generation")


@pytest.fixture
def database():
    return DatabaseGeneration()


@pytest.fixture
def monotonic():
    return FakeClock(start=1000.0)


@pytest.fixture
def memory(host, database, monotonic):
    return IntrospectionMemory(host, database, poll_seconds=0.5, monotonic=monotonic)


def remembered(memory: IntrospectionMemory, token_hash: str = "h") -> TokenRecord | None:
    return memory.recall(token_hash, memory.generation())


def test_a_token_read_under_the_current_generation_is_recalled(memory):
    generation = memory.generation()
    memory.remember("h", RECORD, generation)

    assert remembered(memory) == RECORD
    assert remembered(memory, "other") is None


def test_a_host_advance_forgets_everything(memory, host):
    memory.remember("h", RECORD, memory.generation())
    host.advance()

    assert remembered(memory) is None


def test_a_read_that_a_revocation_overtook_is_not_remembered(memory, host):
    """The generation was read before the database; a revocation committed after that read
    may not be in the row read, so the row must not be kept."""
    before_the_read = memory.generation()
    host.advance()
    memory.generation()  # another request saw the advance first
    memory.remember("h", RECORD, before_the_read)

    assert remembered(memory) is None


def test_the_database_generation_is_read_at_most_once_per_poll_interval(
    memory, database, monotonic
):
    memory.remember("h", RECORD, memory.generation())
    for _ in range(10):
        assert remembered(memory) == RECORD
    assert database.reads == 1

    database.value += 1  # a revocation on another host
    monotonic.advance(0.4)
    assert remembered(memory) == RECORD  # within the interval: the documented bound
    monotonic.advance(0.1)
    assert remembered(memory) is None
    assert database.reads == 2


def test_nothing_is_remembered_while_the_database_generation_cannot_be_read(
    memory, database, monotonic
):
    database.fail = True
    memory.remember("h", RECORD, memory.generation())
    assert remembered(memory) is None

    database.fail = False
    monotonic.advance(0.5)
    memory.remember("h", RECORD, memory.generation())
    assert remembered(memory) == RECORD


def test_an_entry_is_forgotten_after_its_maximum_age(host, database, monotonic):
    memory = IntrospectionMemory(host, database, poll_seconds=100, monotonic=monotonic, max_age=60)
    memory.remember("h", RECORD, memory.generation())
    monotonic.advance(60)
    assert remembered(memory) == RECORD
    monotonic.advance(1)
    assert remembered(memory) is None


def test_the_oldest_entry_makes_room(host, database, monotonic):
    memory = IntrospectionMemory(host, database, poll_seconds=1, monotonic=monotonic, max_entries=2)
    generation = memory.generation()
    for token_hash in ("a", "b", "c"):
        memory.remember(token_hash, RECORD, generation)

    assert len(memory) == 2
    assert remembered(memory, "a") is None
    assert remembered(memory, "c") == RECORD


def test_recorded_activity_is_remembered(memory):
    memory.remember("h", RECORD, memory.generation())
    memory.note_activity("h", 500)

    recalled = remembered(memory)
    assert recalled is not None
    assert recalled.family_last_active_at == 500


def test_issuing_events_do_not_advance_and_every_other_event_does():
    assert not advances_generation("token_issued")
    assert not advances_generation("login_succeeded")
    for event in ("token_revoked", "password_changed", "user_disabled", "client_deleted"):
        assert advances_generation(event)
    assert advances_generation("an_event_added_later")


@pytest.mark.live  # a second Python process
def test_another_process_on_the_host_advances_the_same_counter(host):
    before = host.read()
    code = (
        "import sys; from pathlib import Path; "
        "from auth_server.introspection_memory import HostGeneration; "
        "HostGeneration(Path(sys.argv[1])).advance()"
    )
    subprocess.run([sys.executable, "-c", code, str(host.path)], check=True)

    assert host.read() == before + 1
