"""`manage.py seed_demo [--clear] [--first-start]`: the demo company (docs/maintenance.md)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from maintenance import seeding


class Command(BaseCommand):
    help = (
        "Create the demo waste-collection company (depots, trucks, customers, contracts, "
        "pickups, bookings) in every app that has demo data; --clear removes it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--clear", action="store_true", help="remove the demo rows")
        parser.add_argument(
            "--first-start",
            action="store_true",
            help="seed only if this database was never seeded (what `make run` calls); "
            "TASKYARD_DEMO_ON_FIRST_START=0 turns it off",
        )

    def handle(self, *args, clear: bool, first_start: bool, **options) -> None:
        if clear and first_start:
            raise CommandError("--clear and --first-start cannot be combined")
        if clear:
            self._report("removed", seeding.clear())
            return
        if first_start and (not settings.TASKYARD_DEMO_ON_FIRST_START or seeding.was_seeded()):
            self.stdout.write("demo data: not seeded (seeded before, or turned off)")
            return
        if not seeding.demo_modules():
            self.stdout.write("demo data: no installed app has a demo module")
            return
        self._report("created", seeding.seed())

    def _report(self, verb: str, counts: dict[str, dict[str, int]]) -> None:
        for label, models in counts.items():
            summary = ", ".join(f"{count} {model}" for model, count in models.items()) or "nothing"
            self.stdout.write(f"demo data {verb} for {label}: {summary}")
