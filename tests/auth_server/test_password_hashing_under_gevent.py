"""Password hashing in a gevent worker (how gunicorn runs the authorization server).

Run in a child interpreter, because gevent's monkey-patching cannot be undone in the test
process: it turns `threading` into greenlets, and the hashing pool must still use real OS
threads so that a hash neither stops the worker's other requests nor renices the worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from shared.service.settings import PROJECT_ROOT

pytestmark = pytest.mark.live  # a child interpreter

CHILD = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import json, os, threading, time

    import gevent

    from auth_server.passwords import Passwords

    passwords = Passwords(
        time_cost=3, memory_kib=32768, parallelism=1, min_length=10,
        max_concurrent=1, niceness=10,
    )
    main_thread = threading.get_native_id()
    hashing_threads = []
    ticks = []

    def hash_and_note():
        hashing_threads.append(threading.get_native_id())
        return passwords._hasher.hash("correct horse battery")

    def ticker():
        # Runs on the worker's own thread while the hash runs: proves the loop is not blocked.
        while len(ticks) < 1000 and not done:
            ticks.append(time.monotonic())
            gevent.sleep(0.001)

    done = False
    tick = gevent.spawn(ticker)
    started = time.monotonic()
    with passwords.slot():
        passwords._bounded(hash_and_note)
    elapsed = time.monotonic() - started
    done = True
    tick.join()
    print(json.dumps({
        "main_thread": main_thread,
        "hashing_threads": hashing_threads,
        "main_niceness": os.getpriority(os.PRIO_PROCESS, main_thread),
        "ticks_during_hash": sum(1 for t in ticks if started <= t <= started + elapsed),
        "elapsed": elapsed,
    }))
    """
)


def test_hashing_in_a_gevent_worker_runs_on_a_real_thread_and_leaves_the_worker_unniced():
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        check=True,
    )
    facts = json.loads(child.stdout.strip().splitlines()[-1])
    assert facts["hashing_threads"] and facts["main_thread"] not in facts["hashing_threads"]
    assert facts["main_niceness"] == 0
    # The worker's event loop kept running while the hash ran (a few ms per tick at most).
    assert facts["ticks_during_hash"] >= 3, facts
