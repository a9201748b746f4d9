"""CPU time the gunicorn workers of a service spent, from /proc (Linux).

req/s on a machine shared with the load generator (and, here, with other work) says as much
about the neighbours as about the server; the workers' CPU time per request does not depend on
how long they waited for a core, so it is the steadier measure of what a request costs, and
1 / (CPU seconds per request) is the requests one core can serve.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def workers_cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds of every live child of `master_pid` (the workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(entry)
        # After the name: state, ppid, ... utime is field 14 of stat, stime 15 (1-based).
        if fields is not None and int(fields[1]) == master_pid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS
