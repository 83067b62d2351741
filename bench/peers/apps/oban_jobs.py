"""oban-py peer's worker, in a module of its own: oban stores the worker's import path
with each job (``oban_jobs.NoopWorker``), so it must not live in ``__main__``."""

from __future__ import annotations

from oban import worker


@worker(queue="default")
class NoopWorker:
    """The job under test: does nothing."""

    async def process(self, job):
        return None
