"""Sync sources (Airtable, REST, CSV), runs, record maps, conflicts, inbound webhooks."""
