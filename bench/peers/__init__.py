"""Peer job systems measured beside Taskyard for issue 18 (``python bench/peers/run.py``).

Each peer runs from its own pinned virtualenv under var/bench-peers/; Taskyard's
environment only drives them and reads PostgreSQL's counters. See harness.py.
"""
