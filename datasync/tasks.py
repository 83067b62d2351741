"""Jobs of the data sync app."""

from __future__ import annotations

from typing import Any

from queueing import job


@job(queue="external-api", name="datasync.process_webhook", retry={"max_attempts": 8})
def process_webhook(event_id: int) -> dict[str, Any]:
    """Run the registered handler of one stored inbound webhook event."""
    from datasync import services

    return services.process(event_id)
