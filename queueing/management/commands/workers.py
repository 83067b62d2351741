"""Print the production worker command lines derived from the declared queues."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from queueing.specs import queue_specs, worker_commands


class Command(BaseCommand):
    help = "Show the `celery worker` command of each queue group (settings.TASKYARD_QUEUES)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--print", action="store_true", dest="print_", help="print the command lines"
        )

    def handle(self, *args, print_: bool, **options):
        if not print_:
            raise CommandError("nothing to do: use --print")
        self.stdout.write(
            "# One line per queue group; run each on every worker host (N hosts = N copies).\n"
            "# Concurrency is per host. Queues without a group run in a worker of their own."
        )
        for line in worker_commands(queue_specs()):
            self.stdout.write(line)
