"""The SQLite databases and the instance folder are private to the service's user: they hold
password hashes, every user's notes and the signing keys."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import resource_server
from auth_server import create_app
from resource_server.settings import ResourceSettings
from tests.support import auth_settings, seed


@contextmanager
def permissive_umask():
    """The common default umask (022), which would leave new files world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_both_services_create_their_instance_folder_0700_and_databases_0600(tmp_path):
    instance = tmp_path / "instance"
    auth_db, notes_db = instance / "auth.sqlite3", instance / "resource.sqlite3"
    with permissive_umask():
        auth_app = create_app(
            auth_settings(
                f"sqlite:///{auth_db}",
                "http://127.0.0.1:8000",
                tessera_demo=True,
                auth_key_encryption_key_file=str(instance / "key-encryption.key"),
            ),
            create_tables=True,
        )
        seed(auth_app)  # writes: the WAL and shared-memory files exist now
        notes_app = resource_server.create_app(
            ResourceSettings(
                resource_database_url=f"sqlite:///{notes_db}",
                tessera_demo=True,
                log_level="ERROR",
            ),
            create_tables=True,
        )
        assert notes_app.test_client().get("/readyz").status_code == 200
    assert mode(instance) == 0o700
    files = [auth_db, notes_db, instance / "key-encryption.key"]
    files += [db.with_name(db.name + s) for db in (auth_db, notes_db) for s in ("-wal", "-shm")]
    for path in files:
        assert path.exists(), path
        assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"


def test_a_database_left_world_readable_is_made_private_at_start(tmp_path):
    """Databases created by earlier versions (0644) are tightened when a service opens them."""
    path = tmp_path / "auth.sqlite3"
    folder_mode = mode(tmp_path)
    url = f"sqlite:///{path}"
    create_app(auth_settings(url, "http://127.0.0.1:8000"), create_tables=True)
    path.chmod(0o644)
    wal = path.with_name(path.name + "-wal")
    wal.touch()
    wal.chmod(0o644)
    create_app(auth_settings(url, "http://127.0.0.1:8000"))
    assert mode(path) == 0o600
    assert mode(wal) == 0o600
    assert mode(tmp_path) == folder_mode  # a folder that existed (maybe shared): untouched
