"""A table that test tasks write to, so a test counts how often a job's body committed."""

from django.db import models


class SideEffect(models.Model):
    job_id = models.UUIDField(db_index=True)
    key = models.CharField(max_length=100, db_index=True)
    attempt = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.key} by {self.job_id} (attempt {self.attempt})"
