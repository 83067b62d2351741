"""A batch of 10,000 SMS against a Twilio fake that takes 10 per second: every recipient
gets exactly one message, none is dead-lettered for rate limiting, and the drain takes
about as long as the limit says (N / rate).

One run, on the bench's own database and Redis (bench/throughput.py's environment):

  1. a Twilio fake in this process that answers at most ``--fake-rate`` messages per
     second (sliding one-second window) and 429 + ``Retry-After: 1`` beyond, plus a
     429 at random for ``--random-429`` of the requests that it would have accepted;
  2. N recipients with distinct phone numbers, the seed kinds and templates;
  3. one ``celery worker`` on the notifications queue (threads, concurrency 10, as in
     production) and the relay, on bench/notifications_settings.py (the Twilio
     provider's ceiling and the SMS limit at ``--ceiling``);
  4. one ``notifications.send_batch`` job for the whole segment, SMS only; the clock
     runs from its enqueue to the last message sent.

It prints the drain time against N / fake-rate, the effective rate, how many 429s the
fake answered, and checks: one accepted SMS per recipient (by phone number), one Message
row per recipient, no job dead. Status callbacks go to a receiver that only counts
them (the inbound path has its own bench, bench/webhooks.py).

    .venv/bin/python bench/notifications.py [--recipients 10000] [--fake-rate 10]
        [--ceiling 10/s] [--random-429 0.005]
    make bench-notifications BENCH_ARGS="--recipients 2000"
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import throughput  # noqa: E402
from bench.throughput import (  # noqa: E402
    LOG_DIR,
    check_alive,
    describe_database,
    prepare,
    run_with_cleanup,
    say,
    start_relay,
)
from devstack.fakes.base import Request, Response  # noqa: E402
from devstack.fakes.twilio import TwilioFake  # noqa: E402
from devstack.fakes.webhooks import WebhookReceiver  # noqa: E402

PROCESS_ENV = {"DJANGO_SETTINGS_MODULE": "bench.notifications_settings"}
POLL_SECONDS = 1.0
STALL_TIMEOUT_SECONDS = 120.0
WORKER_CONCURRENCY = 10  # the notifications queue's production concurrency (threads)


class LimitedTwilioFake(TwilioFake):
    """Twilio that takes ``rate`` messages per second and answers 429 beyond, plus a
    429 at random for a share of the rest (a provider's own hiccups)."""

    def __init__(self, rate: int, random_429: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.random_429 = random_429
        self.accepted_at: collections.deque[float] = collections.deque()
        self.rate_limited = 0
        self.random = random.Random(2026)

    def _create(self, request: Request, account_sid: str) -> Response:
        with self.lock:
            now = time.monotonic()
            while self.accepted_at and now - self.accepted_at[0] >= 1.0:
                self.accepted_at.popleft()
            refuse = len(self.accepted_at) >= self.rate or self.random.random() < self.random_429
            if refuse:
                self.rate_limited += 1
            else:
                self.accepted_at.append(now)
        if refuse:
            return self.error_response(429, "Too Many Requests", {"Retry-After": "1"})
        return super()._create(request, account_sid)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--fake-rate", type=int, default=10, help="SMS/s the fake accepts")
    parser.add_argument("--ceiling", default="10/s", help="our Twilio rate ceiling")
    parser.add_argument("--random-429", type=float, default=0.005)
    return parser.parse_args()


def seed_recipients(count: int) -> None:
    from notifications import seed
    from notifications.models import MessageKind, Recipient, Template

    seed.seed(MessageKind, Template)
    Recipient.objects.bulk_create(
        [
            Recipient(
                kind="customer",
                ref=f"BENCH-{n:05d}",
                name=f"Bench {n}",
                phone=f"+3161{n:07d}",
                locale="en",
            )
            for n in range(count)
        ],
        batch_size=1000,
    )


def start_worker():
    from tests import harness

    return harness.start_worker(
        concurrency=WORKER_CONCURRENCY,
        queues=["notifications"],
        env=PROCESS_ENV,
        name=f"bench-notifications-{uuid.uuid4().hex[:8]}@localhost",
        loglevel="WARNING",
        extra_args=["--pool=threads"],
        log_dir=LOG_DIR,
    )


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    # A database of its own: the other benches (re)create taskyard_bench / bench.sqlite3.
    throughput.BENCH_DATABASE = "taskyard_bench_notifications"
    throughput.SQLITE_PATH = throughput.VAR_DIR / "bench-notifications.sqlite3"
    os.environ["BENCH_TWILIO_CEILING"] = args.ceiling
    fake = LimitedTwilioFake(args.fake_rate, args.random_429).start()
    stack.callback(fake.stop)
    os.environ["TWILIO_API_BASE"] = fake.url
    # Status callbacks go to a receiver that only counts them: the bench measures sending.
    callbacks = WebhookReceiver().start()
    stack.callback(callbacks.stop)
    os.environ["PUBLIC_URL"] = callbacks.url
    redis_client = prepare(stack)
    from django.conf import settings

    import queueing
    from config.celery import app
    from notifications.models import Message, MessageStatus

    assert settings.TASKYARD_PROVIDERS["twilio"]["base_url"] == fake.url
    app.control.purge()
    say(f"{args.recipients} recipients on {describe_database()}")
    seed_recipients(args.recipients)
    relay = start_relay(redis_client)
    stack.callback(relay.stop)
    worker = start_worker()
    stack.callback(worker.stop)

    started = time.time()
    queueing.enqueue(
        "notifications.send_batch",
        kwargs={
            "kind": "booking_reminder",
            "segment": "customers",
            "channel": "sms",
            "context": {"booking": "BENCH", "date": "Wed 2 Dec 2026 07:30", "location": "Utrecht"},
        },
    )
    sent = Message.objects.filter(status=MessageStatus.SENT)
    done, last_progress = 0, time.monotonic()
    while done < args.recipients:
        time.sleep(POLL_SECONDS)
        check_alive(worker)
        now_done = sent.count()
        if now_done > done:
            if now_done // 1000 > done // 1000:
                say(f"{now_done} sent after {time.time() - started:.0f} s")
            done, last_progress = now_done, time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_SECONDS:
            raise SystemExit(f"bench: stuck at {done}/{args.recipients}; see {worker.log_path}")
    report(args, fake, started, sent)


def report(args: argparse.Namespace, fake: LimitedTwilioFake, started: float, sent) -> None:
    """Print the numbers and check the bar: one SMS per recipient, no job dead."""
    from notifications.models import Message
    from queueing import Job, JobStatus

    last = max(m for m in sent.values_list("sent_at", flat=True))
    drain = last.timestamp() - started
    ideal = args.recipients / args.fake_rate

    accepted = [r.form()["To"][0] for r in fake.requests if r.status == 201]
    per_phone = collections.Counter(accepted)
    dead = Job.objects.filter(status=JobStatus.DEAD).count()
    deferred_attempts = (
        Job.objects.filter(task_name="notifications.deliver_sms").exclude(attempts=1).count()
    )
    print(f"recipients                 {args.recipients}")
    print(f"fake limit                 {args.fake_rate}/s (+{args.random_429:.1%} random 429s)")
    print(f"our ceiling                {args.ceiling}")
    print(f"drain, enqueue → last sent {drain:.1f} s (N / limit = {ideal:.1f} s)")
    print(f"drain / (N / limit)        {drain / ideal:.2f}")
    print(f"effective rate             {args.recipients / drain:.2f} SMS/s")
    print(f"429s answered by the fake  {fake.rate_limited}")
    print(f"SMS accepted by the fake   {len(accepted)} to {len(per_phone)} numbers")
    print(f"numbers with >1 SMS        {sum(1 for c in per_phone.values() if c > 1)}")
    print(f"Message rows               {Message.objects.count()}")
    print(f"jobs dead                  {dead}")
    print(f"deliver jobs, attempts ≠ 1 {deferred_attempts}")
    assert len(accepted) == len(per_phone) == args.recipients, "each recipient exactly once"
    assert Message.objects.count() == args.recipients
    assert dead == 0, "a job died"


if __name__ == "__main__":
    run_with_cleanup(run, parse_args())
