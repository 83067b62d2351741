"""The REST API under /api/v1/queue/ (docs/api.md)."""
