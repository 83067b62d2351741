"""Email, SMS, push and webhook delivery, templates, preferences and reminders."""
