"""The relay and reaper, one tick at a time, against the real database and Redis.

Jobs go to the ``isolated`` queue, which no worker consumes here, so the messages a tick
publishes can be counted in Redis (even those of the session's relay, if it runs)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

import queueing
from queueing import counters, inflight
from queueing.ledger.enqueue import broker_queue_keys
from queueing.ledger.transitions import LeaseLost, assert_lease, claim, record_success
from queueing.ledger.wake import WAKE_KEY, nudge_relay, wait_for_nudge
from queueing.models import AttemptOutcome, DeadLetter, DeadLetterReason, Job, JobStatus
from queueing.registry import STALE_AFTER_SECONDS, WORKERS_KEY
from queueing.relay.loop import EPOCH_KEY, LOCK_KEY, BrokerDown, Relay, TickReport
from tests.harness import start_relay, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "isolated"


@pytest.fixture(scope="module", autouse=True)
def no_other_relay(relay):
    """These tests drive ticks themselves; the session's relay must not race them."""
    with relay.paused():
        yield


@pytest.fixture
def broker_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(LOCK_KEY)
    client.delete(*broker_queue_keys(QUEUE))
    client.set(EPOCH_KEY, "test")  # a broker that has not lost its data
    yield client
    client.delete(*broker_queue_keys(QUEUE))
    client.close()


def messages(client) -> list[str]:
    """Task ids of the messages waiting in the isolated queue (every priority list)."""
    return [
        json.loads(raw)["headers"]["id"]
        for key in broker_queue_keys(QUEUE)
        for raw in client.lrange(key, 0, -1)
    ]


def unpublished_jobs(count: int) -> list[str]:
    with transaction.atomic():
        ids = [
            str(queueing.enqueue("tests.record", [f"r{n}"], queue=QUEUE, countdown=3600).id)
            for n in range(count)
        ]
    Job.objects.filter(id__in=ids).update(status=JobStatus.QUEUED, run_at=None)
    return ids


def test_due_scheduled_and_retrying_jobs_are_promoted_and_published(broker_client):
    scheduled = queueing.enqueue("tests.record", ["s"], queue=QUEUE, countdown=3600)
    retrying = queueing.enqueue("tests.record", ["r"], queue=QUEUE, countdown=3600)
    later = queueing.enqueue("tests.record", ["l"], queue=QUEUE, countdown=3600)
    past = timezone.now() - dt.timedelta(seconds=1)
    Job.objects.filter(id=scheduled.id).update(run_at=past)
    Job.objects.filter(id=retrying.id).update(status=JobStatus.RETRYING, run_at=past)

    report = Relay().tick()

    assert report.promoted == 2
    assert {str(scheduled.id), str(retrying.id)} <= set(messages(broker_client))
    assert str(later.id) not in messages(broker_client)
    assert Job.objects.get(id=scheduled.id).status == JobStatus.QUEUED
    assert Job.objects.get(id=later.id).status == JobStatus.SCHEDULED


def test_jobs_whose_publish_failed_are_published_once(broker_client):
    ids = unpublished_jobs(50)

    relay = Relay()
    relay.tick()
    relay.tick()

    assert sorted(messages(broker_client)) == sorted(ids)
    assert Job.objects.filter(id__in=ids, published_at=None).count() == 0


def test_several_relays_at_once_publish_each_job_exactly_once(broker_client):
    ids = unpublished_jobs(300)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def run_relay() -> None:
        try:
            relay = Relay()
            start.wait()
            deadline = time.monotonic() + 10
            while Job.objects.filter(id__in=ids, published_at=None).exists():
                relay.tick()
                assert time.monotonic() < deadline, "relays did not finish"
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_relay) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    published = messages(broker_client)
    assert len(published) == len(set(published)) == 300
    assert set(published) == set(ids)


def test_a_broker_that_lost_its_data_gets_every_queued_job_again(broker_client):
    ids = unpublished_jobs(20)
    relay = Relay()
    relay.tick()
    assert sorted(messages(broker_client)) == sorted(ids)

    broker_client.flushdb()  # what a Redis restart without persistence looks like

    report = relay.tick()
    assert report.broker_wiped
    assert sorted(messages(broker_client)) == sorted(ids)


def published_long_ago(ids: list[str]) -> None:
    long_ago = timezone.now() - dt.timedelta(seconds=settings.RELAY_REPUBLISH_AFTER_SECONDS + 5)
    Job.objects.filter(id__in=ids).update(published_at=long_ago)


def test_a_lost_message_is_published_again_even_while_other_messages_wait(broker_client):
    """Issue 19: the repair used to wait for an empty queue, which under steady load never
    comes. Now the index of messages (queueing/inflight.py) says which one is missing."""
    waiting, lost = unpublished_jobs(2)
    relay = Relay()
    relay.tick()  # both published, both indexed as waiting in the broker
    assert sorted(messages(broker_client)) == sorted([waiting, lost])
    broker_client.delete(*broker_queue_keys(QUEUE))
    broker_client.rpush(QUEUE, json.dumps({"headers": {"id": waiting}}))  # only one survives
    broker_client.srem(inflight.SENT_KEY, lost)
    published_long_ago([waiting, lost])

    report = relay.tick()

    assert report.republished_lost == 1
    assert sorted(messages(broker_client)) == sorted([waiting, lost])
    assert relay.tick().republished_lost == 0  # indexed again: not lost twice


def test_a_message_held_by_a_live_worker_is_not_lost_and_a_dead_workers_is(broker_client):
    held, dropped = unpublished_jobs(2)
    relay = Relay()
    relay.tick()
    broker_client.delete(*broker_queue_keys(QUEUE))  # both taken off the broker...
    inflight.mark_received(held, "celery@alive")  # ...by a worker with a heartbeat
    inflight.mark_received(dropped, "celery@gone")  # ...by one without
    broker_client.hset(WORKERS_KEY, "celery@alive", json.dumps({"queues": [], "at": time.time()}))
    try:
        published_long_ago([held, dropped])
        wait_until(
            lambda: relay.tick().released_from_dead_workers == 1,
            timeout=5,
            message="the dead worker's job released",
        )
        assert messages(broker_client) == [dropped]  # published again, once
        assert relay.tick().republished_lost == 0  # the live worker's is where it should be
        assert not broker_client.exists(inflight.reserved_key("celery@gone"))
        # A live worker that received a job long ago and never started it lost it (its
        # consumer reconnected after a broker outage): published again.
        broker_client.zadd(inflight.reserved_key("celery@alive"), {held: time.time() - 60})
        assert relay.tick().republished_lost == 1
        assert sorted(messages(broker_client)) == sorted([dropped, held])
    finally:
        broker_client.hdel(WORKERS_KEY, "celery@alive")
        broker_client.delete(inflight.reserved_key("celery@alive"))


def test_a_message_taken_by_a_consumer_killed_before_recording_it_is_published_again(
    broker_client,
):
    """A SIGKILL between kombu's delivery (the message moves to its ``unacked`` hash) and
    Celery's task_received (the receipt in the index) leaves the job "waiting in the
    broker" per the index while no list holds it; kombu would give it back only after its
    visibility timeout. Seen in a CI run: 1 of 500 jobs queued for 240 s."""
    taken, waiting = unpublished_jobs(2)
    relay = Relay()
    relay.tick()
    # What kombu's consumer does on delivery, then the process dies: no receipt written.
    key = next(k for k in broker_queue_keys(QUEUE) if broker_client.llen(k))
    raws = broker_client.lrange(key, 0, -1)
    raw = next(r for r in raws if json.loads(r)["headers"]["id"] == taken)
    broker_client.lrem(key, 1, raw)
    broker_client.hset(inflight.UNACKED_KEY, "tag-killed", json.dumps([json.loads(raw), "", QUEUE]))
    broker_client.zadd(inflight.UNACKED_INDEX_KEY, {"tag-killed": time.time() - 600})
    try:
        published_long_ago([taken, waiting])

        assert relay.tick().republished_lost == 1
        assert sorted(messages(broker_client)) == sorted([taken, waiting])
        assert not broker_client.hexists(inflight.UNACKED_KEY, "tag-killed")  # no third copy
        assert relay.tick().republished_lost == 0
    finally:
        broker_client.hdel(inflight.UNACKED_KEY, "tag-killed")
        broker_client.zrem(inflight.UNACKED_INDEX_KEY, "tag-killed")


def test_a_lost_message_among_more_than_a_batch_stamped_at_once_is_found(broker_client):
    """A bulk enqueue (or a relay batch) stamps many jobs with one published_at: the
    repair's cursor must go round them all, not stop after the first batch."""
    count = settings.RELAY_BATCH_SIZE + 100
    ids = [
        str(job.id)
        for job in queueing.enqueue_many(
            "tests.record", [[f"b{n}"] for n in range(count)], queue=QUEUE, countdown=3600
        )
    ]
    long_ago = timezone.now() - dt.timedelta(seconds=settings.RELAY_REPUBLISH_AFTER_SECONDS + 5)
    Job.objects.filter(id__in=ids).update(
        status=JobStatus.QUEUED, run_at=None, published_at=long_ago
    )
    # Near the end: the last of the bulk, and the last in the repair's order (time, id).
    last_by_id = Job.objects.filter(id__in=ids).order_by("-id").values_list("id", flat=True)[0]
    lost = {ids[-1], str(last_by_id)}
    broker_client.sadd(inflight.SENT_KEY, *[job_id for job_id in ids if job_id not in lost])
    try:
        relay = Relay()
        republished = sum(relay.tick().republished_lost for _ in range(3))
        assert republished == len(lost)
        assert set(messages(broker_client)) == lost
    finally:
        broker_client.srem(inflight.SENT_KEY, *ids)


def test_a_nudge_late_in_a_long_wait_wakes_the_relay_at_once(broker_client):
    """The relay's client gives up on a reply after 1 s (RELAY_BROKER_TIMEOUT_SECONDS): a
    longer BLPOP raised TimeoutError and the relay slept out the rest of its wait, deaf
    to nudges."""
    broker_client.delete(WAKE_KEY)
    relay = Relay()
    woke: list[tuple[bool, float]] = []
    waiter = threading.Thread(
        target=lambda: woke.append((wait_for_nudge(relay.redis, 20), time.monotonic()))
    )
    started = time.monotonic()
    waiter.start()
    wait_until(lambda: time.monotonic() - started > 2.5 * settings.RELAY_BROKER_TIMEOUT_SECONDS)
    nudged = time.monotonic()
    nudge_relay()
    waiter.join(25)
    assert woke, "the wait did not end"
    (answered, at) = woke[0]
    assert answered, "the wait ended without seeing the nudge"
    assert at - nudged < 0.5, f"woke {at - nudged:.2f} s after the nudge"


def test_after_an_outage_a_live_worker_is_not_taken_for_dead_before_it_beats_again(
    broker, broker_client
):
    """No heartbeat is written while Redis is away: once it is back, a live worker's
    entry is stale until its next beat. The relay must not take it for dead in that
    window (its received jobs published again, its index dropped); a worker that really
    died is released once the window has passed."""
    held, dropped = unpublished_jobs(2)
    relay = Relay()
    relay.tick()
    broker_client.delete(*broker_queue_keys(QUEUE))  # both taken off the broker
    inflight.mark_received(held, "celery@alive")
    inflight.mark_received(dropped, "celery@gone")
    stale = time.time() - 2 * STALE_AFTER_SECONDS  # the outage was longer than the window
    for worker in ("celery@alive", "celery@gone"):
        broker_client.hset(WORKERS_KEY, worker, json.dumps({"queues": [], "at": stale}))
    broker.freeze()
    try:
        relay.tick()
        assert relay.broker_down_since is not None
    finally:
        broker.thaw()
    try:
        wait_until(lambda: relay.tick() and relay.broker_down_since is None, timeout=10)
        back = time.monotonic()

        def alive_beats_then_tick() -> int:
            # The live worker's heartbeat thread writes again a beat after the return.
            if time.monotonic() - back > 2.0:
                entry = {"queues": [], "at": time.time()}
                broker_client.hset(WORKERS_KEY, "celery@alive", json.dumps(entry))
            return relay.tick().released_from_dead_workers

        released = wait_until(alive_beats_then_tick, timeout=STALE_AFTER_SECONDS + 5, interval=0.2)
        assert time.monotonic() - back >= STALE_AFTER_SECONDS
        assert released == 1
        assert not broker_client.exists(inflight.reserved_key("celery@gone"))
        assert broker_client.zscore(inflight.reserved_key("celery@alive"), held) is not None
        assert dropped in messages(broker_client)
    finally:
        broker_client.hdel(WORKERS_KEY, "celery@alive", "celery@gone")
        broker_client.delete(
            inflight.reserved_key("celery@alive"), inflight.reserved_key("celery@gone")
        )
        broker_client.srem(inflight.WORKERS_KEY, "celery@alive", "celery@gone")


def expire_lease(job_id) -> None:
    Job.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))


def test_expired_lease_goes_back_to_queued_and_the_late_worker_is_fenced_off(broker_client):
    (job_id,) = unpublished_jobs(1)
    Job.objects.filter(id=job_id).update(published_at=timezone.now())
    first = claim(job_id, "worker-a/1")
    assert first.token == 1

    expire_lease(job_id)  # worker a stalls past its lease
    counted = f"{QUEUE}|tests.record|lost"
    before = int(broker_client.hget(counters.PROCESSED_KEY, counted) or 0)
    report = Relay().tick()
    assert report.reaped == 1
    # Counted in /metrics (one round trip after the reap's commit).
    assert int(broker_client.hget(counters.PROCESSED_KEY, counted) or 0) == before + 1
    job = Job.objects.get(id=job_id)
    assert job.status == JobStatus.QUEUED
    assert [a.outcome for a in job.attempt_rows.all()] == [AttemptOutcome.LOST]
    assert messages(broker_client) == [job_id]  # published again in the same tick

    second = claim(job_id, "worker-b/2")
    assert second.token == 2 and second.attempt == 2

    # Worker a wakes up: it can neither record a result nor commit guarded writes.
    assert record_success(first, "late") is False
    with pytest.raises(LeaseLost), transaction.atomic():
        assert_lease(first)
    assert record_success(second, "on time") is True
    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, "on time", 2)


def test_a_job_lost_on_its_last_attempt_is_dead(broker_client):
    job = queueing.enqueue("tests.record", ["x"], queue=QUEUE, max_attempts=1)
    claim(str(job.id), "worker-a/1")
    expire_lease(job.id)

    report = Relay().tick()

    assert report.dead_lost == 1
    job.refresh_from_db()
    assert job.status == JobStatus.DEAD
    assert DeadLetter.objects.get(job=job).reason == DeadLetterReason.LOST


def test_a_duplicate_claim_gets_nothing(broker_client):
    (job_id,) = unpublished_jobs(1)
    assert claim(job_id, "worker-a/1") is not None
    assert claim(job_id, "worker-b/1") is None


@pytest.mark.django_db(transaction=True)
def test_a_delayed_job_is_published_when_due_not_at_the_next_tick(relay, broker_client, settings):
    """The relay sleeps until the next due job; one scheduled during that sleep for an
    earlier time wakes it (queueing.ledger.wake), so it is not held to the 10 s tick."""
    settings.RELAY_INTERVAL_SECONDS = 10  # here as in the relay: enqueue decides to nudge
    with relay.paused():
        slow = start_relay(env={"RELAY_INTERVAL_SECONDS": "10"})
        try:
            # Asleep after its first tick: blocked on the wake list, nothing due before 10 s.
            wait_until(
                lambda: any(c["cmd"] == "blpop" for c in broker_client.client_list()),
                timeout=10,
            )
            job = queueing.enqueue("queueing.ping", ["soon"], queue=QUEUE, countdown=1.5)
            wait_until(lambda: messages(broker_client) == [str(job.id)], timeout=8)
        finally:
            slow.stop()
    job.refresh_from_db()
    lateness = (job.published_at - job.run_at).total_seconds()
    assert 0 <= lateness < 0.5, f"published {lateness:.2f} s after it was due"


def test_a_failed_publish_leaves_no_job_of_the_batch_marked_published(broker, broker_client):
    """Issue 19: with the broker down, a tick used to take back the stamp of the first job
    only, leaving the rest of the batch marked published with no message."""
    ids = unpublished_jobs(30)
    relay, report = Relay(), TickReport()
    broker.stop()  # between the stamps and the publishes of the batch
    try:
        with pytest.raises(BrokerDown):
            relay._publish_unpublished(report)
        assert report.publish_failures == 1
        assert Job.objects.filter(id__in=ids, published_at__isnull=False).count() == 0
    finally:
        broker.restart_empty()
