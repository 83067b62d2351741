"""Roles are Django groups; what each may do is a set of queueing permissions.

The groups and their permissions are created by migration (0006) and kept in step by
``manage.py migrate``. Give a user a role by adding them to the group (admin site or
``user.groups.add``). Superusers may do everything.

  admin        everything: stats, every job, pause/resume/clean, recurring jobs,
               dead letters, enqueue any API-enabled task
  manager      billing, data sync and routing jobs; every job; stats; dead letters (read)
  dispatcher   routing and notification jobs; only the jobs they enqueued
  customer     no queue access
  driver       no queue access
"""

from __future__ import annotations

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "admin": (
        "view_queue_stats",
        "view_all_jobs",
        "operate_queues",
        "manage_recurring",
        "view_dead_letters",
        "manage_dead_letters",
        "enqueue_any",
    ),
    "manager": (
        "view_queue_stats",
        "view_all_jobs",
        "view_dead_letters",
        "enqueue_billing",
        "enqueue_datasync",
        "enqueue_routing",
    ),
    "dispatcher": ("enqueue_routing", "enqueue_notifications"),
    "customer": (),
    "driver": (),
}


def enqueue_permission(queue: str) -> str:
    """The permission that lets a user enqueue jobs on ``queue`` (besides enqueue_any)."""
    return f"queueing.enqueue_{queue.replace('-', '_')}"


def may_enqueue(user, queue: str) -> bool:
    return user.has_perm("queueing.enqueue_any") or user.has_perm(enqueue_permission(queue))


def may_enqueue_anything(user) -> bool:
    """Holds at least one enqueue permission (so may see its own jobs)."""
    return user.is_superuser or any(
        perm.startswith("queueing.enqueue_") for perm in user.get_all_permissions()
    )
