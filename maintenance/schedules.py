"""Maintenance's cron entries, seeded after migrate (docs/apps.md). Crons are read in
TIME_ZONE (UTC): 00:30 UTC is 01:30 in Amsterdam in winter, 02:30 in summer, quiet hours
either way. Edit the times in the admin (Periodic tasks); deploys keep the edits."""

SCHEDULES = {
    "maintenance: back up the database": {
        "task": "maintenance.backup_database",
        "cron": "30 0 * * *",
        "description": "Back up, verify by restoring into a scratch database, rotate "
        "(docs/operations.md)",
    },
    "maintenance: database upkeep": {
        "task": "maintenance.database_upkeep",
        "cron": "15 3 * * *",
        "description": "VACUUM (ANALYZE) the ledger's tables; table sizes and bloat",
    },
}
