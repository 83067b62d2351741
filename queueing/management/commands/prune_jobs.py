"""Delete finished jobs past their retention (queueing/control/retention.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from queueing.control.retention import PRUNE_BATCH_SIZE, prune


class Command(BaseCommand):
    help = "Delete succeeded/dead/cancelled jobs older than their queue's retention."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only count")
        parser.add_argument("--batch-size", type=int, default=PRUNE_BATCH_SIZE)

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        counts = prune(dry_run=dry_run, batch_size=batch_size)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb}: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
