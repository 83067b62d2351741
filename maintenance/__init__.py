"""Pruning, backups, database optimisation, analytics roll-ups, reaper and alerts."""
