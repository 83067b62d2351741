"""``manage.py health``: the readiness checks of /health/ready, for scripts and cron.
Prints one line per check (or JSON with --json); exit 0 when ready, 1 when not."""

import json

from django.core.management.base import BaseCommand

from queueing.observe.health import readiness


class Command(BaseCommand):
    help = "Run the readiness checks (database, broker, workers, beat, relay); exit 1 if any fails."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the checks as JSON")

    def handle(self, *args, **options) -> None:
        ok, checks = readiness()
        if options["json"]:
            self.stdout.write(json.dumps({"status": "ok" if ok else "fail", "checks": checks}))
        else:
            for name, result in checks.items():
                details = ", ".join(f"{k}={v}" for k, v in result.items() if k != "ok")
                self.stdout.write(f"{'ok  ' if result['ok'] else 'FAIL'} {name}: {details}")
        if not ok:
            raise SystemExit(1)
