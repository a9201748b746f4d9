"""The peer servers of /tmp/bench/peers (node-oidc-provider, the Authlib baseline), run back
to back with Tessera through the peers' own harness, `bench.sh`, on free ports.

bench.sh starts the peer, checks one real token (and `active: true`, 200/401 at the RS),
warms up, runs wrk with the same -t/-c/-d as bench/run.py and appends one line per run to
results.tsv in RESULTS_DIR, which is read back here.
"""

from __future__ import annotations

import csv
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.wrk import Load

DEFAULT_DIR = Path(os.environ.get("BENCH_PEERS_DIR", "/tmp/bench/peers"))


@dataclass(frozen=True)
class PeerRun:
    peer: str
    scenario: str
    env: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.peer} {self.scenario}"


# What Tessera's scenarios compare with: the token scenario with ES256 JWTs, as Tessera signs.
RUNS = (
    PeerRun("oidc-provider", "token", (("SIGNING_ALG", "ES256"),)),
    PeerRun("oidc-provider", "introspect"),
    PeerRun("authlib-baseline", "token"),
    PeerRun("authlib-baseline", "introspect"),
    PeerRun("authlib-baseline", "resource"),
)


def available(peers_dir: Path) -> str | None:
    """None when the peers are set up, else why not."""
    if not (peers_dir / "bench.sh").is_file():
        return f"no {peers_dir}/bench.sh"
    if not (peers_dir / "oidc-provider" / "node_modules").is_dir():
        return "oidc-provider has no node_modules (npm ci)"
    if not (peers_dir / ".venv" / "bin" / "python").exists():
        return "no peers/.venv (see the peers' README)"
    return None


def run_peer(peers_dir: Path, run: PeerRun, load: Load, ports: dict[str, int]) -> dict:
    """One measured wrk run of `run` (after bench.sh's own warm-up); the row of results.tsv."""
    with tempfile.TemporaryDirectory(prefix="tessera-peer-") as results:
        env = {
            **os.environ,
            **dict(run.env),
            "RESULTS_DIR": results,
            "DURATION": f"{max(1, round(load.seconds))}s",
            "WARMUP": "2s",
            "REPEAT": "1",
            "THREADS": str(load.threads),
            "CONNS": str(load.connections),
            "OP_PORT": str(ports["op"]),
            "AS_PORT": str(ports["as"]),
            "RS_PORT": str(ports["rs"]),
        }
        finished = subprocess.run(
            [str(peers_dir / "bench.sh"), run.peer, run.scenario],
            cwd=peers_dir.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=load.seconds + 180,
            check=False,
        )
        tsv = Path(results) / "results.tsv"
        if finished.returncode != 0 or not tsv.exists():
            raise RuntimeError(f"{run.key}: bench.sh failed: {finished.stderr[-1500:]}")
        with tsv.open() as rows:
            row = next(csv.DictReader(rows, delimiter="\t"))
    return {
        "rps": float(row["rps"]),
        "p50_ms": float(row["p50_ms"]),
        "p90_ms": float(row["p90_ms"]),
        "p99_ms": float(row["p99_ms"]),
        "max_ms": float(row["max_ms"]),
        "non_2xx": int(row["non2xx"]),
        "socket_errors": int(row["socket_errors"]),
        "steal_pct": row.get("steal_pct"),
        "foreign_cpu_pct": row.get("foreign_cpu_pct"),
        "variant": row.get("variant"),
    }
