from django.apps import AppConfig


class QueueingConfig(AppConfig):
    name = "queueing"
    verbose_name = "Queueing"

    def ready(self) -> None:
        from celery.signals import task_revoked, worker_ready

        from queueing.execution import on_task_revoked
        from queueing.pause import on_worker_ready

        task_revoked.connect(on_task_revoked, weak=False, dispatch_uid="taskyard-revoked")
        worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="taskyard-paused")
