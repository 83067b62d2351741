"""`manage.py upkeep`: VACUUM (ANALYZE) / ANALYZE now and print table sizes and bloat
(docs/operations.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from maintenance import upkeep


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value = value / 1024  # type: ignore[assignment]
    return str(value)


class Command(BaseCommand):
    help = (
        "Database upkeep: VACUUM (ANALYZE) of the job ledger's tables on PostgreSQL, "
        "ANALYZE + PRAGMA optimize on SQLite; prints table sizes and bloat estimates."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = upkeep.run_upkeep()
        except upkeep.UpkeepError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{run.vendor}: {', '.join(run.maintained)} in {run.duration_ms} ms")
        self.stdout.write(f"{'table':40} {'rows':>10} {'dead':>8} {'size':>10} {'bloat':>10}")
        for row in run.tables:
            bloat = row.get("bloat_bytes", row.get("unused_bytes"))
            self.stdout.write(
                f"{row['table'][:40]:40} {row['rows']:>10} {row.get('dead_rows', '-'):>8} "
                f"{_size(row['total_bytes']):>10} {_size(bloat):>10}"
            )
        if run.reclaimable_bytes is not None:
            self.stdout.write(
                f"free pages a VACUUM would give back: {_size(run.reclaimable_bytes)}"
            )
