"""The admin console: every page renders with data, actions change the ledger (after a
confirmation where they cannot be undone) and write audit events."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

import queueing
from queueing.control.pause import resume_queue
from queueing.models import AuditEvent, DeadLetter, Job, JobStatus, QueueState
from tests.factories import dead_letter, external_assets

pytestmark = pytest.mark.django_db(transaction=True)


def act(client, url: str, action: str, ids, confirm: bool = False):
    data = {"action": action, "_selected_action": [str(i) for i in ids]}
    if confirm:
        data["confirm"] = "yes"
    return client.post(url, data)


def test_every_page_renders_with_data(admin_client):
    letter = dead_letter()
    queueing.enqueue("queueing.ping", queue="isolated", countdown=60)
    for url in (
        "/admin/",
        "/admin/queueing/dashboard/",
        "/admin/queueing/job/",
        "/admin/queueing/deadletter/",
        "/admin/queueing/queuestate/",
        "/admin/queueing/auditevent/",
        "/admin/queueing/alert/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/django_celery_results/taskresult/",
        f"/admin/queueing/deadletter/{letter.id}/change/",
    ):
        assert admin_client.get(url).status_code == 200, url
    dashboard = admin_client.get("/admin/queueing/dashboard/").content.decode()
    assert 'data-queue="isolated"' in dashboard and "<svg" in dashboard
    assert external_assets(dashboard) == [] and "<script" in dashboard
    queues = admin_client.get("/admin/queueing/queuestate/").content.decode()
    assert all(name in queues for name in ("default", "billing", "isolated"))
    # Dead letters show how many share their cause.
    dead_letter("admin")
    letters = admin_client.get("/admin/queueing/deadletter/").content.decode()
    assert "2 x " in letters


def test_cancel_asks_first_then_cancels_and_audits(admin_client):
    job = queueing.enqueue("queueing.ping", queue="isolated", countdown=600)
    asked = act(admin_client, "/admin/queueing/job/", "cancel_jobs", [job.id])
    assert asked.status_code == 200 and b"Yes, go ahead" in asked.content
    assert Job.objects.get(id=job.id).status == JobStatus.SCHEDULED  # nothing yet
    act(admin_client, "/admin/queueing/job/", "cancel_jobs", [job.id], confirm=True)
    assert Job.objects.get(id=job.id).status == JobStatus.CANCELLED
    event = AuditEvent.objects.get(action="job.cancel")
    assert (event.target_id, event.actor_name, event.reason) == (str(job.id), "admin", "via admin")


def test_replay_review_and_discard_dead_letters(admin_client):
    first, second = dead_letter("one"), dead_letter("two")
    url = "/admin/queueing/deadletter/"
    act(admin_client, url, "review_letters", [first.id])
    assert DeadLetter.objects.get(id=first.id).reviewed
    act(admin_client, url, "replay_letters", [first.id], confirm=True)
    replayed = DeadLetter.objects.get(id=first.id).replayed_as
    assert replayed is not None and replayed.status == JobStatus.QUEUED
    act(admin_client, url, "discard_letters", [second.id], confirm=True)
    assert DeadLetter.objects.get(id=second.id).discarded_at is not None
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "dead_letter.review",
        "dead_letter.replay",
        "dead_letter.discard",
    ]


def test_pause_and_resume_a_queue_from_the_admin(admin_client):
    QueueState.objects.get_or_create(name="isolated")
    state = QueueState.objects.get(name="isolated")
    url = "/admin/queueing/queuestate/"
    try:
        act(admin_client, url, "pause_queues", [state.id], confirm=True)
        assert QueueState.objects.get(name="isolated").paused
        assert "PAUSED" in admin_client.get(url).content.decode()
        act(admin_client, url, "resume_queues", [state.id])
        assert not QueueState.objects.get(name="isolated").paused
    finally:
        resume_queue("isolated")
    assert [e.action for e in AuditEvent.objects.order_by("id")] == ["queue.pause", "queue.resume"]


def test_retry_runs_a_waiting_job_now_and_replays_a_dead_one(admin_client):
    waiting = queueing.enqueue("queueing.ping", queue="isolated", countdown=3600)
    letter = dead_letter("retry")
    act(admin_client, "/admin/queueing/job/", "retry_jobs", [waiting.id, letter.job_id])
    waiting.refresh_from_db()
    assert (waiting.run_at - waiting.enqueued_at).total_seconds() < 60
    assert DeadLetter.objects.get(id=letter.id).replayed_as is not None


def test_the_queue_buttons_confirm_first(admin_client):
    QueueState.objects.get_or_create(name="isolated")
    state = QueueState.objects.get(name="isolated")
    changelist = admin_client.get("/admin/queueing/queuestate/").content.decode()
    button = f"/admin/queueing/queuestate/{state.id}/pause/"
    assert f'href="{button}"' in changelist
    try:
        asked = admin_client.get(button)
        assert asked.status_code == 200 and b"Yes, go ahead" in asked.content
        assert not QueueState.objects.get(name="isolated").paused
        done = admin_client.post(button, {"confirm": "yes"})
        assert done.status_code == 302
        assert QueueState.objects.get(name="isolated").paused
        resume = f"/admin/queueing/queuestate/{state.id}/resume/"
        assert (
            f'href="{resume}"' in admin_client.get("/admin/queueing/queuestate/").content.decode()
        )
        admin_client.post(resume, {"confirm": "yes"})
        assert not QueueState.objects.get(name="isolated").paused
    finally:
        resume_queue("isolated")


def test_staff_who_may_only_look_cannot_act(client):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    may_view = Permission.objects.filter(
        codename__startswith="view_", content_type__app_label="queueing"
    )
    viewer.user_permissions.add(*may_view)
    client.force_login(viewer)
    QueueState.objects.get_or_create(name="isolated")
    state = QueueState.objects.get(name="isolated")
    job = queueing.enqueue("queueing.ping", queue="isolated", countdown=600)
    page = client.get("/admin/queueing/job/").content.decode()
    assert "cancel_jobs" not in page  # no such action offered
    act(client, "/admin/queueing/job/", "cancel_jobs", [job.id], confirm=True)
    assert Job.objects.get(id=job.id).status == JobStatus.SCHEDULED
    assert (
        client.post(f"/admin/queueing/queuestate/{state.id}/pause/", {"confirm": "yes"}).status_code
        == 403
    )
    assert not QueueState.objects.get(name="isolated").paused
    assert AuditEvent.objects.count() == 0
