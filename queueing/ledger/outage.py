"""Logging a broker outage once, not once per job (issue 19)."""

from __future__ import annotations

import logging
import threading
import time


class OutageLog:
    """Publish failures logged per outage, not per job: a WARNING naming the first job
    when publishes start failing, a summary every SUMMARY_SECONDS while they go on, and
    one line when a publish succeeds again. Thousands of enqueues in an outage are
    thousands of unpublished jobs for the relay, not thousands of log lines."""

    SUMMARY_SECONDS = 60.0

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.logger = logger
        self._lock = threading.Lock()
        self.since: float | None = None  # monotonic start of the current outage
        self.failures = 0
        self._unreported = 0
        self._reported_at = 0.0

    def failed(self, job_id: str, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            self.failures += 1
            self._unreported += 1
            if self.since is None:
                self.since, self._reported_at, self._unreported = now, now, 0
                first = True
            elif now - self._reported_at >= self.SUMMARY_SECONDS:
                count, self._unreported, self._reported_at = self._unreported, 0, now
                first = False
            else:
                return
        if first:
            self.logger.warning(
                "%s failed, first job %s: %r; the relay publishes the jobs left "
                "unpublished, and this process logs a summary every %.0f s until the broker "
                "is back",
                self.what,
                job_id,
                exc,
                self.SUMMARY_SECONDS,
            )
        else:
            self.logger.warning(
                "%s: %d more failed in the last %.0f s (broker down for %.0f s): %r",
                self.what,
                count,
                self.SUMMARY_SECONDS,
                now - (self.since or now),
                exc,
            )

    def back(self) -> None:
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            down, failures = time.monotonic() - self.since, self.failures
            self.since, self.failures, self._unreported = None, 0, 0
        self.logger.warning(
            "%s: the broker accepts messages again after %.1f s; %d failed meanwhile",
            self.what,
            down,
            failures,
        )
