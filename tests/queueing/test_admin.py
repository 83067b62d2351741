from __future__ import annotations

import pytest

import queueing
from queueing.ledger.retry import Decision, FailureKind, PermanentError
from queueing.ledger.transitions import claim, record_failure
from queueing.models import DeadLetter

pytestmark = pytest.mark.django_db


def test_ledger_pages_render_with_data_and_are_read_only(admin_client):
    job = queueing.enqueue("tests.record", ["admin"])
    attempt = claim(str(job.id), "worker-a/1")
    record_failure(attempt, PermanentError("bad"), Decision(False, 0, FailureKind.PERMANENT, "x"))
    letter = DeadLetter.objects.get(job=job)

    for url in (
        "/admin/queueing/job/",
        f"/admin/queueing/job/?status=dead&queue={job.queue}",
        f"/admin/queueing/job/{job.id}/change/",
        "/admin/queueing/deadletter/",
        f"/admin/queueing/deadletter/{letter.id}/change/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    page = admin_client.get(f"/admin/queueing/job/{job.id}/change/").content.decode()
    assert "queueing.ledger.retry.PermanentError" in page  # the attempt row inline
    assert admin_client.get("/admin/queueing/job/add/").status_code == 403
    assert admin_client.post(f"/admin/queueing/job/{job.id}/delete/").status_code == 403
