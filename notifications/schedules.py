"""Recurring notification work, seeded after migrate (docs/apps.md)."""

SCHEDULES = {
    "notifications: reminders of upcoming bookings": {
        "task": "notifications.ensure_reminders",
        "cron": "7 * * * *",  # hourly: bookings written in bulk get their reminders
        "kwargs": {"hours": 48},
        "description": "Schedule the T-24h/T-1h/T-15min reminders bookings lack.",
    },
}
