"""Dead letters: review, replay and discard jobs that failed for good.

Plain functions for the admin and the REST API to call (later issues surface them). Each
one is a conditional update, so two operators acting on the same dead letter cannot both
replay it.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from queueing.ledger.enqueue import enqueue
from queueing.models import DeadLetter, DeadLetterQuerySet, Job, JobOrigin, JobStatus

logger = logging.getLogger(__name__)


class DeadLetterError(ValueError):
    pass


def enqueue_again(job: Job, *, user=None) -> Job:
    """The same work as ``job`` once more: task, arguments, queue, priority and publish
    options, attempts reset, linked to it (``replay_of``, origin ``replay``)."""
    return enqueue(
        job.task_name,
        job.args,
        job.kwargs,
        queue=job.queue,
        priority=job.priority,
        max_attempts=job.max_attempts,
        options=job.options,
        user=user,
        origin=JobOrigin.REPLAY,
        replay_of=job,
    )


def replay(dead_letter_id: int, *, user=None) -> Job:
    """Enqueue the dead job again: same task, arguments, queue and priority, attempts
    reset, linked to the dead one (``replay_of``). The dead letter is marked reviewed.
    Raises DeadLetterError if it was already replayed or discarded."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().select_related("job").get(id=dead_letter_id)
        if letter.replayed_as_id is not None:
            raise DeadLetterError(
                f"dead letter {dead_letter_id} was already replayed as job {letter.replayed_as_id}"
            )
        if letter.discarded_at is not None:
            raise DeadLetterError(f"dead letter {dead_letter_id} was discarded")
        dead = letter.job
        job = enqueue_again(dead, user=user)
        now = timezone.now()
        DeadLetter.objects.filter(id=letter.id).update(
            replayed_as=job,
            reviewed=True,
            reviewed_at=now,
            reviewed_by=user if getattr(user, "is_authenticated", False) else None,
        )
    logger.info("dead job %s replayed as job %s", dead.id, job.id)
    return job


def mark_reviewed(dead_letter_id: int, *, user=None, note: str = "") -> DeadLetter:
    """Record that a human looked at it, with an optional note (appended, never lost)."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(id=dead_letter_id)
        letter.reviewed = True
        letter.reviewed_at = timezone.now()
        letter.reviewed_by = user if getattr(user, "is_authenticated", False) else None
        if note:
            letter.note = f"{letter.note}\n{note}".strip()
        letter.save(update_fields=["reviewed", "reviewed_at", "reviewed_by", "note"])
    return letter


def discard(dead_letter_id: int, *, user=None, note: str = "") -> DeadLetter:
    """Close a dead letter without replaying it. The job stays ``dead`` (its history is
    kept until retention prunes it); the letter leaves the review list."""
    letter = mark_reviewed(dead_letter_id, user=user, note=note)
    updated = (
        DeadLetter.objects.open().filter(id=dead_letter_id).update(discarded_at=timezone.now())
    )
    if not updated:
        raise DeadLetterError(f"dead letter {dead_letter_id} was already replayed or discarded")
    letter.refresh_from_db()
    return letter


def open_dead_letters() -> DeadLetterQuerySet:
    """Dead letters still waiting for a decision, newest first."""
    return DeadLetter.objects.open().filter(job__status=JobStatus.DEAD).select_related("job")
