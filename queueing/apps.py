from django.apps import AppConfig


class QueueingConfig(AppConfig):
    name = "queueing"
    verbose_name = "Queueing"

    def ready(self) -> None:
        from celery.signals import (
            task_postrun,
            task_prerun,
            task_received,
            task_revoked,
            worker_init,
            worker_process_init,
            worker_ready,
            worker_shutdown,
        )
        from django.db.models.signals import post_migrate

        from queueing.broker import tolerate_kombu_restore_failure
        from queueing.control.pause import on_worker_ready
        from queueing.control.schedules import seed_after_migrate
        from queueing.inflight import flush_pending
        from queueing.ledger.transitions import on_task_received, on_task_revoked
        from queueing.registry import ON_HEARTBEAT
        from queueing.registry import on_worker_ready as start_heartbeat
        from queueing.registry import on_worker_shutdown as stop_heartbeat
        from queueing.roles import ensure_roles
        from queueing.specs import check_all
        from queueing.worker import connections

        # A malformed queue, rate or throttle declaration stops every process here.
        check_all()
        # A Redis restart must not stop the workers (see the function).
        tolerate_kombu_restore_failure()

        # Workers keep their database connection across jobs (queueing/worker/connections.py).
        # worker_init: the solo and threads pools; worker_process_init: each prefork child.
        worker_init.connect(connections.keep_connections, weak=False, dispatch_uid="taskyard-db")
        worker_process_init.connect(
            connections.keep_connections, weak=False, dispatch_uid="taskyard-db-child"
        )
        task_prerun.connect(
            connections.on_task_boundary, weak=False, dispatch_uid="taskyard-db-pre"
        )
        task_postrun.connect(
            connections.on_task_boundary, weak=False, dispatch_uid="taskyard-db-post"
        )
        task_revoked.connect(on_task_revoked, weak=False, dispatch_uid="taskyard-revoked")
        # Where each message is (queueing/inflight.py): the relay's lost-message repair.
        task_received.connect(on_task_received, weak=False, dispatch_uid="taskyard-received")
        ON_HEARTBEAT.append(flush_pending)
        worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="taskyard-paused")
        # After the paused queues were cancelled, so the first heartbeat is already right.
        worker_ready.connect(start_heartbeat, weak=False, dispatch_uid="taskyard-heartbeat")
        worker_shutdown.connect(stop_heartbeat, weak=False, dispatch_uid="taskyard-heartbeat")
        # Roles come back after a flush (tests) and stay in step with queueing/roles.py.
        post_migrate.connect(
            lambda sender, **kwargs: ensure_roles() if sender is self else None,
            weak=False,
            dispatch_uid="taskyard-roles",
        )
        # Every app's schedules.py, seeded after migrate (missing entries only).
        post_migrate.connect(seed_after_migrate, weak=False, dispatch_uid="taskyard-schedules")
