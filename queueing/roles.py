"""Roles are Django groups; what each may do is a set of queueing permissions.

The groups and their permissions are created by migration (0006) and brought back in
step after every ``migrate`` or ``flush`` (post_migrate: ensure_roles). Give a user a
role by adding them to the group (admin site or ``user.groups.add``). Superusers may do
everything.

  admin        everything: stats, every job, pause/resume/clean, recurring jobs,
               dead letters, enqueue any API-enabled task
  manager      billing, data sync and routing jobs; every job; stats; dead letters (read)
  dispatcher   routing and notification jobs; only the jobs they enqueued

Per queue, ``enqueue_<queue>`` lets a role enqueue, cancel and retry that queue's jobs. A
job that declares ``roles=`` (queueing.job) is enqueueable over the API by exactly those
roles (and admins), whatever its queue: the app, not this module, says who may start it.
  customer     no queue access
  driver       no queue access
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "admin": (
        "view_queue_stats",
        "view_all_jobs",
        "operate_queues",
        "manage_recurring",
        "view_dead_letters",
        "manage_dead_letters",
        "enqueue_any",
        "override_queue",
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


PERMISSION_NAMES = {
    "view_queue_stats": "Can read queue status, stats and metrics",
    "view_all_jobs": "Can see every job, not only the ones they enqueued",
    "operate_queues": "Can pause, resume and clean queues",
    "manage_recurring": "Can create, change and delete recurring jobs",
    "view_dead_letters": "Can list dead letters",
    "manage_dead_letters": "Can review and replay dead letters",
    "enqueue_any": "Can enqueue any API-enabled task",
    "override_queue": "Can send a job to another queue than the one its task declares",
    "enqueue_billing": "Can enqueue billing jobs",
    "enqueue_routing": "Can enqueue route optimisation jobs",
    "enqueue_notifications": "Can enqueue notification jobs",
    "enqueue_datasync": "Can enqueue data sync jobs",
    "enqueue_maintenance": "Can enqueue maintenance jobs",
}


def ensure_roles(apps=None, **_) -> None:
    """Create the permissions (on the Job content type) and the role groups with exactly
    their permissions. Idempotent; ``apps`` is a migration's app registry or Django's."""
    if apps is None:
        from django.apps import apps
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    job_type, _ = content_type_model.objects.get_or_create(app_label="queueing", model="job")
    permissions = {
        codename: permission_model.objects.get_or_create(
            content_type=job_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in PERMISSION_NAMES.items()
    }
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set([permissions[codename] for codename in codenames])


def enqueue_permission(queue: str) -> str:
    """The permission that lets a user enqueue jobs on ``queue`` (besides enqueue_any)."""
    return f"queueing.enqueue_{queue.replace('-', '_')}"


def may_enqueue(user: Any, queue: str) -> bool:
    """May enqueue (and so cancel or retry) jobs on ``queue``."""
    return user.has_perm("queueing.enqueue_any") or user.has_perm(enqueue_permission(queue))


def may_enqueue_task(user: Any, task: Any, queue: str) -> bool:
    """May enqueue ``task`` over the API: enqueue_any, else the roles the task declares
    (``job(roles=...)``), else (no roles declared) the queue's enqueue permission."""
    if user.has_perm("queueing.enqueue_any"):
        return True
    roles = getattr(task, "enqueue_roles", None)
    if roles is None:
        return user.has_perm(enqueue_permission(queue))
    return bool(user.is_active and user.groups.filter(name__in=roles).exists())


def may_enqueue_anything(user: Any, declared_roles: Iterable[str] = ()) -> bool:
    """Holds at least one enqueue permission, or a role some task declares (so may
    create jobs and see its own)."""
    if user.is_superuser or any(
        perm.startswith("queueing.enqueue_") for perm in user.get_all_permissions()
    ):
        return True
    roles = set(declared_roles)
    return bool(roles and user.groups.filter(name__in=roles).exists())


def may_override_queue(user: Any) -> bool:
    """May send a job to a queue other than its task's own (the queue decides workers,
    limits and who may operate the job, so choosing it is a privilege of its own)."""
    return bool(user.has_perm("queueing.override_queue"))


def may_see_job(user: Any, job: Any) -> bool:
    """Every job for a role that sees all; otherwise only the ones the user enqueued."""
    return bool(
        user.has_perm("queueing.view_all_jobs") or (user.pk and job.enqueued_by_id == user.pk)
    )


def may_operate(user: Any, job: Any) -> bool:
    """May cancel or retry ``job``: operates queues, or may enqueue on its queue."""
    return bool(user.has_perm("queueing.operate_queues") or may_enqueue(user, job.queue))
