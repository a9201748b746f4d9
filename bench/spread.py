"""Requests answered per gunicorn worker, read from the workers' own metric files.

Every worker of a service writes `tessera_http_requests_total` to its own file in
PROMETHEUS_MULTIPROC_DIR (counter_<pid>.db), so the difference of two snapshots taken around a
run is each worker's share of it, with no change to the service.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

METRIC = "tessera_http_requests_total"


def requests_per_worker(metrics_dir: str | Path) -> dict[int, float]:
    counts: dict[int, float] = {}
    for path in Path(metrics_dir).glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            values = MmapedDict.read_all_values_from_file(str(path))
        except struct.error:
            continue  # the worker is creating the file right now: nothing counted in it yet
        counts[pid] = sum(value for key, value, *_ in values if json.loads(key)[1] == METRIC)
    return counts


def delta(before: dict[int, float], after: dict[int, float]) -> dict[int, int]:
    return {pid: int(after[pid] - before.get(pid, 0.0)) for pid in sorted(after)}


def imbalance(per_worker: dict[int, int]) -> float | None:
    """Most requests of a worker over the fewest (1.0 is even; inf if a worker had none)."""
    counts = list(per_worker.values())
    if len(counts) < 2 or max(counts) == 0:
        return None
    return max(counts) / min(counts) if min(counts) else float("inf")
