"""python -m djq_bench.enqueue N: N async_task() calls, each its own commit."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djq_bench.settings")

import django

django.setup()

from django_q.tasks import async_task  # noqa: E402


def enqueue(jobs: int) -> float:
    started = time.perf_counter()
    for _ in range(jobs):
        async_task("djq_bench.tasks.noop")
    return time.perf_counter() - started


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m djq_bench.enqueue N")
    print(json.dumps({"seconds": enqueue(int(sys.argv[1]))}))
