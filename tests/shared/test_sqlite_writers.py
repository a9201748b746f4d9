"""SQLite writers wait for another process's write lock without stopping their worker
(shared/service/sqlite_writers.py), and the writers of one process take turns without errors.

The gevent half runs in a child interpreter patched by gevent, as a gunicorn gevent worker is:
SQLite's own busy handler sleeps in C there and would stop every greenlet of the worker.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import create_engine, text

from shared.service.database import configure_engine, engine_options

ROOT = Path(__file__).resolve().parents[2]

GEVENT_CHILD = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import sqlite3, sys, time
    from types import SimpleNamespace
    import gevent
    from sqlalchemy import create_engine, text
    from shared.service.database import configure_engine, engine_options

    path = sys.argv[1]
    settings = SimpleNamespace(sqlite_busy_timeout_ms=5000, instance_dir=path.rsplit('/', 1)[0])
    url = "sqlite:///" + path
    engine = create_engine(url, **engine_options(url, settings))
    configure_engine(engine, settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))

    other_process = sqlite3.connect(path, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock
    ticks, done = [], []

    def writer():
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        done.append(time.monotonic())

    def ticker():
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            gevent.sleep(0.01)
            ticks.append(1)

    w = gevent.spawn(writer)
    gevent.spawn(ticker).join()
    released = time.monotonic()
    assert not done, "wrote while another connection held the write lock"
    other_process.execute("COMMIT")
    w.join(timeout=5)
    assert done and done[0] >= released
    # the lock was handed back: the next writers go straight through, after a rollback too
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    gevent.joinall([gevent.spawn(writer) for _ in range(5)], timeout=5)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM t")).scalar()
    print("ticks", len(ticks), "rows", rows)
    """
)


def test_a_waiting_writer_lets_the_other_greenlets_of_its_worker_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", GEVENT_CHILD, str(tmp_path / "db.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    _, ticks, _, rows = result.stdout.split()
    # 0.3 s of 10 ms sleeps: 30 ticks if nothing stopped the worker; with SQLite's busy
    # handler sleeping in C, none until the lock was freed.
    assert int(ticks) >= 15, result.stdout
    assert int(rows) == 6, result.stdout


def test_writers_of_one_process_take_turns_without_errors(tmp_path):
    settings = SimpleNamespace(sqlite_busy_timeout_ms=5000, instance_dir=str(tmp_path))
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    engine = create_engine(url, **engine_options(url, settings))
    configure_engine(engine, settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    errors: list[Exception] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait()
        try:
            for i in range(25):
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": n * 100 + i})
                    conn.execute(text("UPDATE t SET v = v WHERE v = :v"), {"v": n})
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 200
