"""Dead letters: replay (same arguments, attempts reset, link kept), review, discard."""

from __future__ import annotations

import pytest

from queueing.ledger import deadletters
from queueing.ledger.transitions import fingerprint
from queueing.models import Job, JobOrigin, JobStatus
from tests.factories import dead_letter

pytestmark = pytest.mark.django_db(transaction=True)


def test_replay_enqueues_the_same_work_with_attempts_reset(admin_user, published):
    letter = dead_letter("invoice-42", kwargs={"seconds": 0}, priority=2)

    replay = deadletters.replay(letter.id, user=admin_user)

    assert (replay.task_name, replay.args, replay.kwargs, replay.queue, replay.priority) == (
        "tests.record",
        ["invoice-42"],
        {"seconds": 0},
        letter.job.queue,
        2,
    )
    assert replay.attempts == 0 and replay.status == JobStatus.QUEUED
    assert replay.replay_of_id == letter.job_id and replay.origin == JobOrigin.REPLAY
    assert replay.enqueued_by == admin_user
    assert str(replay.id) in published
    letter.refresh_from_db()
    assert letter.replayed_as_id == replay.id
    assert letter.reviewed and letter.reviewed_by == admin_user
    assert Job.objects.get(id=letter.job_id).status == JobStatus.DEAD  # history kept


def test_a_dead_letter_is_replayed_at_most_once(admin_user):
    letter = dead_letter()
    deadletters.replay(letter.id, user=admin_user)
    with pytest.raises(deadletters.DeadLetterError, match="already replayed"):
        deadletters.replay(letter.id, user=admin_user)
    assert Job.objects.filter(replay_of_id=letter.job_id).count() == 1


def test_review_keeps_every_note(admin_user):
    letter = dead_letter()
    deadletters.mark_reviewed(letter.id, user=admin_user, note="address missing in CRM")
    deadletters.mark_reviewed(letter.id, user=admin_user, note="asked billing to fix")
    letter.refresh_from_db()
    assert letter.reviewed and letter.reviewed_at is not None
    assert letter.note == "address missing in CRM\nasked billing to fix"


def test_discard_closes_it_and_blocks_replay(admin_user):
    letter = dead_letter()
    deadletters.discard(letter.id, user=admin_user, note="customer left")
    assert letter.id not in {d.id for d in deadletters.open_dead_letters()}
    with pytest.raises(deadletters.DeadLetterError, match="discarded"):
        deadletters.replay(letter.id, user=admin_user)


def test_same_cause_same_fingerprint():
    a = fingerprint("billing.MissingAddress", "customer 42 has no address (id 9f1c...)")
    b = fingerprint("billing.MissingAddress", "customer 7 has no address (id 0a2b...)")
    c = fingerprint("billing.TaxError", "customer 42 has no address (id 9f1c...)")
    assert a == b != c
    other_customer = dead_letter(message="customer 1 has no billing address")
    assert other_customer.fingerprint == dead_letter().fingerprint
