"""oban-py peer: enqueue no-op jobs (oban_jobs.NoopWorker) on the ``default`` queue.

python -m oban_bench enqueue N
oban start --dsn URL --queues default:1
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from oban import Oban
from oban_jobs import NoopWorker


async def enqueue(jobs: int) -> float:
    pool = await Oban.create_pool(os.environ["BENCH_DATABASE_URL"])
    try:
        # No queues: a client-mode instance that only inserts jobs.
        async with Oban(pool=pool):
            started = time.perf_counter()
            for _ in range(jobs):
                await NoopWorker.enqueue({})
            return time.perf_counter() - started
    finally:
        await pool.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "enqueue":
        sys.exit("usage: python -m oban_bench enqueue N")
    print(json.dumps({"seconds": asyncio.run(enqueue(int(sys.argv[2])))}))
