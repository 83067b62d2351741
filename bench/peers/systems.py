"""The peers of issue 18's table, pinned, and how each is installed, fed and run.

Worker shape, chosen to match the Celery/Taskyard rows (one ``celery worker
--concurrency=2 --pool=prefork``: two processes, one job at a time each):

* Procrastinate: two ``procrastinate worker --concurrency=1`` processes. Its worker is a
  single asyncio process; concurrency 2 in one process would share one interpreter (the
  no-op runs in a thread), which is not "2 worker processes".
* django-q2: one ``qcluster`` with ``workers: 2`` (its own pool of 2 worker processes,
  plus its sentinel, pusher and monitor processes, all counted in worker CPU).
* oban-py: two ``oban start --queues default:1`` processes (two nodes). Open-source
  oban-py runs a queue inside one asyncio process; multi-process execution is Oban Pro.
"""

from __future__ import annotations

from bench.peers.harness import Peer, python_of

PROCRASTINATE = Peer(
    name="procrastinate",
    system="Procrastinate 3.10",
    python=python_of("3.11"),
    requirements=("procrastinate==3.10.*", "psycopg[binary]==3.*", "psycopg-pool==3.*"),
    distribution="procrastinate",
    setup=(("{bin}/procrastinate", "--app=procrastinate_bench.app", "schema", "--apply"),),
    enqueue=("{bin}/python", "-m", "procrastinate_bench", "enqueue"),
    worker=(
        "{bin}/procrastinate",
        "--app=procrastinate_bench.app",
        "worker",
        "--name=bench-{i}",
        "--concurrency=1",
    ),
    worker_processes=2,
    remaining_sql="SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    failed_sql="SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
    note="psycopg connector; 2 worker processes x concurrency 1; jobs kept (delete_jobs=never)",
)

DJANGO_Q2 = Peer(
    name="django-q2",
    system="django-q2 1.11, ORM broker, persistent connections",
    python=python_of("3.11"),
    requirements=("django-q2==1.11.*", "Django==5.2.*", "psycopg[binary]==3.*"),
    distribution="django-q2",
    setup=(("{bin}/django-admin", "migrate", "--noinput", "-v", "0"),),
    enqueue=("{bin}/python", "-m", "djq_bench.enqueue"),
    worker=("{bin}/django-admin", "qcluster"),
    worker_processes=1,
    # A task leaves the ORM queue when the monitor acknowledges it, after saving its result.
    remaining_sql="SELECT count(*) FROM django_q_ormq",
    failed_sql="SELECT count(*) FROM django_q_task WHERE NOT success",
    note=(
        "qcluster workers=2, CONN_MAX_AGE=None, sync off, results saved "
        "(default save_limit=250: older successes pruned)"
    ),
    env={"DJANGO_SETTINGS_MODULE": "djq_bench.settings"},
)

OBAN = Peer(
    name="oban",
    system="oban-py 0.7 (Python 3.12)",
    python=python_of("3.12"),
    requirements=("oban==0.7.*", "psycopg[binary]==3.*"),
    distribution="oban",
    setup=(("{bin}/oban", "install", "--dsn", "{url}"),),
    enqueue=("{bin}/python", "-m", "oban_bench", "enqueue"),
    worker=(
        "{bin}/oban",
        "start",
        "--dsn",
        "{url}",
        "--queues",
        "default:1",
        "--node",
        "bench-{i}",
        "--log-level",
        "warning",
    ),
    worker_processes=2,
    remaining_sql=(
        "SELECT count(*) FROM oban_jobs "
        "WHERE state IN ('available', 'scheduled', 'executing', 'retryable')"
    ),
    failed_sql="SELECT count(*) FROM oban_jobs WHERE state <> 'completed'",
    note="2 `oban start` processes x queue limit 1 (multi-process execution is Oban Pro)",
)

PEERS: dict[str, Peer] = {peer.name: peer for peer in (PROCRASTINATE, DJANGO_Q2, OBAN)}
