"""Procrastinate peer: one no-op task on the psycopg connector.

python -m procrastinate_bench enqueue N
procrastinate --app=procrastinate_bench.app worker --concurrency=1
"""

from __future__ import annotations

import json
import os
import sys
import time

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_DATABASE_URL"]))


@app.task(name="noop")
def noop() -> None:
    """The job under test: does nothing."""


def enqueue(jobs: int) -> float:
    with app.open():
        started = time.perf_counter()
        for _ in range(jobs):
            noop.defer()
        return time.perf_counter() - started


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "enqueue":
        sys.exit("usage: python -m procrastinate_bench enqueue N")
    print(json.dumps({"seconds": enqueue(int(sys.argv[2]))}))
