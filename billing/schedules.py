"""Billing's recurring jobs, seeded after migrate (editable in the admin afterwards)."""

SCHEDULES = {
    "billing: monthly invoices": {
        "task": "billing.run_billing",
        # The 1st at 02:00: the previous month is complete and the night is quiet.
        "cron": "0 2 1 * *",
        "kwargs": {"period": "previous"},
        "description": "Invoice every customer for the previous month (one job each)",
    },
}
