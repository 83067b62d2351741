"""Backups of the whole database, verified by restoring them (issue 17, docs/operations.md).

    operations.create_backup()   dump (pg_dump custom format / SQLite backup API) into
                                 BACKUP_DIR + a JSON manifest, then verify
    verify.verify_backup(b)      restore into a scratch database, compare row counts
    operations.rotate()          delete what the retention policy (BACKUP_KEEP) drops
    operations.restore_backup()  replace the live database, in one transaction
    health.findings()            failed or stale backups, for the alert checks

sqlite.py and postgres.py hold what differs per database; rotation.py is the pure
keep/delete rule.
"""
