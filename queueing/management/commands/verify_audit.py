"""``manage.py verify_audit``: walk the audit trail's hash chain; exit 1 at the first
broken link, naming the event."""

from django.core.management.base import BaseCommand, CommandError

from queueing.audit import verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; report the first broken link."

    def handle(self, *args, **options) -> None:
        checked, broken = verify()
        if broken:
            raise CommandError(
                f"audit chain broken at event #{broken.event_id}: {broken.problem} "
                f"({checked} events before it verify)"
            )
        self.stdout.write(f"audit chain intact: {checked} events verified")
