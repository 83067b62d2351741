"""Maintenance's own tables."""

from __future__ import annotations

from django.db import models


class DemoDataset(models.Model):
    """That the demo company was seeded here, once: a first ``make run`` seeds it, a later
    start does not seed it again, even after ``seed_demo --clear`` removed it."""

    seeded_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    # Rows created per app and model by the last seed, e.g. {"billing": {"Customer": 300}}.
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "demo dataset"

    def __str__(self) -> str:
        return f"demo data seeded {self.seeded_at:%Y-%m-%d %H:%M}" if self.seeded_at else "demo"
