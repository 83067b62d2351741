"""Maintenance's cron entries, seeded after migrate (docs/apps.md), on the business's
clock (BUSINESS_TIME_ZONE): the backup at 01:30 and upkeep at 03:15, quiet hours. Edit
the times in the admin (Periodic tasks); deploys keep the edits."""

SCHEDULES = {
    "maintenance: back up the database": {
        "task": "maintenance.backup_database",
        "cron": "30 1 * * *",
        "timezone": "business",
        "description": "Back up, verify by restoring into a scratch database, rotate "
        "(docs/operations.md)",
    },
    "maintenance: database upkeep": {
        "task": "maintenance.database_upkeep",
        "cron": "15 3 * * *",
        "timezone": "business",
        "description": "VACUUM (ANALYZE) the ledger's tables; table sizes and bloat",
    },
}
