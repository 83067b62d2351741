"""Inbound webhooks under a burst: every delivery stored and processed, none lost.

The issue's bar: 10,000 webhook POSTs in a burst are all stored and processed, with the
p99 acceptance latency reported. Measured in one run against a real HTTP server
(gunicorn, config.wsgi) on the bench's own database and Redis, with one Celery worker on
``external-api`` (threads pool) and the relay:

  (a) baseline: GET /health/live (a view that runs SELECT 1) at the same concurrency:
      what the HTTP server, Django and one database round trip cost;
  (b) webhooks: N signed POSTs to /webhooks/airtable/ (generic HMAC scheme), each a
      distinct event: verify, Redis de-dupe claim, INSERT event + job in one
      transaction, publish after commit, 202.

Then the run waits until every event is processed by its job, re-sends 10 % of them
(same bodies, signed anew) to check de-duplication, and prints acceptance p50/p95/p99/max
for both sides, the ratio, ingest and drain rates, and stored/processed/lost counts.

    .venv/bin/python bench/webhooks.py [--events 10000] [--concurrency 32] [--web-workers 4]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/webhooks.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.throughput import (  # noqa: E402
    BENCH_PROCESS_ENV,
    LOG_DIR,
    describe_database,
    percentile,
    prepare,
    run_with_cleanup,
    say,
    start_relay,
)

SOURCE = "airtable"
# A client-side timeout far above any acceptable latency: a request that takes it is a
# failure to report, not a number to average.
CLIENT_TIMEOUT_SECONDS = 30.0
DRAIN_DEADLINE_SECONDS = 900.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_web(port: int, workers: int, threads: int) -> subprocess.Popen:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = (LOG_DIR / "gunicorn.log").open("w")
    argv = [
        sys.executable,
        *("-m", "gunicorn", "config.wsgi"),
        f"--bind=127.0.0.1:{port}",
        f"--workers={workers}",
        f"--threads={threads}",
        "--backlog=4096",
        "--log-level=warning",
    ]
    env = {**os.environ, **BENCH_PROCESS_ENV}
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: gunicorn exited; see {LOG_DIR / 'gunicorn.log'}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                return process
        time.sleep(0.2)
    raise SystemExit("bench: gunicorn did not answer within 60 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def burst(requests: list[tuple[str, str, bytes, dict[str, str]]], concurrency: int) -> dict:
    """Send every request from ``concurrency`` threads (one keep-alive client each);
    return latencies (s) and status counts."""
    import httpx

    local = threading.local()
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    lock = threading.Lock()

    def send(request: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, url, body, headers = request
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS)
        started = time.perf_counter()
        try:
            status: int | str = client.request(
                method, url, content=body, headers=headers
            ).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, requests))
    return {"latencies": latencies, "statuses": statuses, "seconds": time.perf_counter() - started}


def signed(url: str, events: list[dict], secret: str) -> list[tuple[str, str, bytes, dict]]:
    from datasync.signatures import sign_hmac

    out = []
    for event in events:
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", **sign_hmac(secret, body)}
        out.append(("POST", url, body, headers))
    return out


def summary(label: str, result: dict) -> dict[str, float]:
    values = sorted(result["latencies"])
    stats = {q: percentile(values, q) * 1000 for q in (50, 95, 99)}
    stats["max"] = values[-1] * 1000
    stats["rate"] = len(values) / result["seconds"]
    say(
        f"{label}: {len(values)} requests in {result['seconds']:.1f} s "
        f"({stats['rate']:.0f}/s), statuses {result['statuses']}, latency ms "
        f"p50 {stats[50]:.1f} p95 {stats[95]:.1f} p99 {stats[99]:.1f} max {stats['max']:.1f}"
    )
    return stats


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    redis_client = prepare(stack)
    for key in redis_client.scan_iter("taskyard:webhook:seen:*"):
        redis_client.delete(key)

    base = start_processes(args, stack, redis_client)
    baseline = burst([("GET", f"{base}/health/live", b"", {})] * args.events, args.concurrency)
    base_stats = summary("baseline GET /health/live", baseline)
    measure(args, base, base_stats)


def start_processes(args: argparse.Namespace, stack: contextlib.ExitStack, redis_client) -> str:
    """The relay, a worker on external-api and gunicorn; returns the server's URL."""
    from tests import harness

    relay = start_relay(redis_client)
    stack.callback(relay.stop)
    worker = harness.start_worker(
        concurrency=args.worker_threads,
        queues=["external-api"],
        env=BENCH_PROCESS_ENV,
        name="bench-webhooks@localhost",
        loglevel="WARNING",
        extra_args=["--pool=threads"],
        log_dir=LOG_DIR,
    )
    stack.callback(worker.stop)
    port = free_port()
    web = start_web(port, args.web_workers, args.web_threads)
    stack.callback(stop, web)
    base = f"http://127.0.0.1:{port}"
    say(f"{describe_database()}; gunicorn {args.web_workers}x{args.web_threads} on :{port}")
    return base


def measure(args: argparse.Namespace, base: str, base_stats: dict[str, float]) -> None:
    """The burst of webhooks, the wait for processing, the repeats; prints the verdict."""
    from django.conf import settings

    from datasync.models import WebhookEvent, WebhookStatus

    secret = settings.WEBHOOK_SOURCES[SOURCE]["secret"]
    url = f"{base}/webhooks/{SOURCE}/"
    events = [
        {"id": f"evt_bench_{n}", "type": "record.updated", "record": f"rec{n}", "n": n}
        for n in range(args.events)
    ]
    # One at a time first: what a single provider delivery waits for its 202.
    alone = burst(
        signed(
            url, [{"id": f"evt_alone_{n}", "type": "record.updated"} for n in range(200)], secret
        ),
        1,
    )
    alone_stats = summary("webhooks POST, one at a time", alone)
    drain_started = time.perf_counter()
    result = burst(signed(url, events, secret), args.concurrency)
    stats = summary("webhooks POST", result)
    accepted = result["statuses"].get(202, 0)

    deadline = time.monotonic() + DRAIN_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        waiting = WebhookEvent.objects.filter(status=WebhookStatus.RECEIVED).count()
        if waiting == 0:
            break
        time.sleep(0.5)
    drained = time.perf_counter() - drain_started
    stored = WebhookEvent.objects.filter(event_id__startswith="evt_bench_").count()
    done = (
        WebhookEvent.objects.filter(event_id__startswith="evt_bench_")
        .exclude(status=WebhookStatus.RECEIVED)
        .count()
    )

    repeats = signed(url, events[: max(1, args.events // 10)], secret)
    again = burst(repeats, args.concurrency)
    after_repeats = WebhookEvent.objects.filter(event_id__startswith="evt_bench_").count()

    say(f"stored {stored} of {args.events} sent ({accepted} answered 202); processed {done}")
    say(f"burst + processing took {drained:.1f} s ({done / drained:.0f} events/s end to end)")
    say(
        f"re-sent {len(repeats)} (answered {again['statuses']}): events stored after "
        f"{after_repeats} (duplicates stored: {after_repeats - stored})"
    )
    say(f"unloaded acceptance: p50 {alone_stats[50]:.1f} ms, p99 {alone_stats[99]:.1f} ms")
    say(
        f"p99 acceptance {stats[99]:.1f} ms vs baseline {base_stats[99]:.1f} ms: "
        f"{stats[99] / base_stats[99]:.2f}x; p50 {stats[50] / base_stats[50]:.2f}x"
    )
    lost = args.events - done
    verdict = "PASS" if lost == 0 and stored == args.events and accepted == args.events else "FAIL"
    say(f"{verdict}: {lost} lost, bar = all {args.events} stored and processed")
    if verdict == "FAIL":
        raise SystemExit(1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32, help="client threads")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn processes")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per process")
    parser.add_argument("--worker-threads", type=int, default=8, help="external-api worker")
    return parser.parse_args()


if __name__ == "__main__":
    run_with_cleanup(run, parse_args())
