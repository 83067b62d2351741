from django.apps import AppConfig


class QueueingConfig(AppConfig):
    name = "queueing"
    verbose_name = "Queueing"

    def ready(self) -> None:
        from celery.signals import task_revoked

        from queueing.execution import on_task_revoked

        task_revoked.connect(on_task_revoked, weak=False, dispatch_uid="taskyard-revoked")
