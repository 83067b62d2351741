"""The platform core: job tracking, enqueue, retry policy, dead letters, queue control."""
