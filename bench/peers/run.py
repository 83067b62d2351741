"""Issue 18's peer rows: Procrastinate, django-q2 and oban-py on one private PostgreSQL.

    .venv/bin/python bench/peers/run.py --jobs 5000 [--peers procrastinate,django-q2,oban]
        [--pg-dir var/bench-pg] [--database-url postgres://postgres@127.0.0.1:PORT/postgres]

Starts a private PostgreSQL 15 cluster (bench/pgcluster.py) unless --database-url names a
private cluster the caller started, measures each peer (bench/peers/harness.py), and
prints one JSON line per peer as it finishes, then a Markdown table. bench/throughput.py
calls ``run_peers(cluster, jobs, peers)`` with its own cluster to add these rows to its.
A peer that cannot be installed or run gets a row saying why.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Run as a script, Python puts bench/peers/ first on sys.path; the project root is needed.
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path[0] = str(BASE_DIR)

from bench.peers.harness import Cluster, PeerUnavailableError, measure, unavailable_row  # noqa: E402
from bench.peers.systems import PEERS  # noqa: E402
from bench.pgcluster import DEFAULT_DIR, ExistingPostgres, PrivatePostgres  # noqa: E402

DEFAULT_JOBS = 5000

COLUMNS = (
    ("system", "system"),
    ("version", "version"),
    ("drain_jobs_per_s", "drain jobs/s"),
    ("enqueue_jobs_per_s", "enqueue jobs/s"),
    ("worker_cpu_ms_per_job", "worker CPU ms/job"),
    ("pg_cpu_us_per_job", "PostgreSQL CPU µs/job"),
    ("statements_per_job", "statements/job"),
    ("commits_per_job", "commits/job"),
    ("wal_syncs_per_job", "WAL syncs/job"),
    ("sessions_per_job", "new DB sessions/job"),
    ("note", "note"),
)


def run_peers(
    cluster: Cluster, jobs: int, peers: list[str] | None = None, *, echo: bool = False
) -> list[dict[str, Any]]:
    """One row per peer (all of PEERS by default), in order, measured on ``cluster``.

    Never raises for a peer's failure: its row says "not measured: <why>" instead.
    With ``echo``, each row is printed as a JSON line as soon as it is measured.
    """
    rows = []
    for name in peers or list(PEERS):
        peer = PEERS[name]
        try:
            row = measure(peer, cluster, jobs)
        except PeerUnavailableError as exc:
            row = unavailable_row(peer, jobs, str(exc))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            row = unavailable_row(peer, jobs, f"{type(exc).__name__}: {exc}")
        rows.append(row)
        if echo:
            print(json.dumps(row), flush=True)
    return rows


def cell(value: Any) -> str:
    """A figure as the tables print it (bench/throughput.py uses it too)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines.extend("| " + " | ".join(cell(row.get(key)) for key, _ in COLUMNS) + " |" for row in rows)
    return "\n".join(lines)


def peer_list(value: str) -> list[str]:
    """A comma-separated list of known peers (argparse type; bench/throughput.py too)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PEERS)}"
        )
    return names


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of jobs, got {value}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=_positive, default=DEFAULT_JOBS)
    parser.add_argument("--peers", type=peer_list, default=list(PEERS))
    parser.add_argument("--pg-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument(
        "--database-url",
        help="an existing private cluster (any database on it) instead of starting one",
    )
    args = parser.parse_args(argv)

    print(f"# {platform.node()} {platform.platform()}, {args.jobs} jobs", file=sys.stderr)
    if args.database_url:
        cluster = ExistingPostgres(args.database_url)
        print(f"# {json.dumps(cluster.server_settings())}", file=sys.stderr)
        rows = run_peers(cluster, args.jobs, args.peers, echo=True)
    else:
        with PrivatePostgres(args.pg_dir) as pg:
            print(f"# {json.dumps(pg.server_settings())}", file=sys.stderr)
            rows = run_peers(pg, args.jobs, args.peers, echo=True)
    print()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
