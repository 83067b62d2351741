"""Recurring notification work, seeded after migrate (docs/apps.md)."""

SCHEDULES = {
    "notifications: reminders of upcoming bookings": {
        "task": "notifications.ensure_reminders",
        "cron": "7 * * * *",  # hourly: bookings written in bulk get their reminders
        "kwargs": {"hours": 48},
        "description": "Schedule the T-24h/T-1h/T-15min reminders bookings lack.",
    },
    "notifications: messages behind dead delivery jobs": {
        "task": "notifications.settle_dead_deliveries",
        # hourly: the last attempt already marks its message failed; this catches the
        # rest (a job dead-lettered outside an attempt, a delivery job cancelled by hand)
        "cron": "37 * * * *",
        "kwargs": {},
        "description": "Mark messages whose delivery job died failed, with its reason.",
    },
}
