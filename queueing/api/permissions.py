"""Permission classes of the API: each names the queueing permissions it needs (granted
through the role groups of queueing/roles.py)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def requires(*perms: str) -> type[BasePermission]:
    """A DRF permission class: the user is authenticated and has every one of ``perms``
    (given without the app label, e.g. ``requires("operate_queues")``)."""
    full = tuple(f"queueing.{perm}" for perm in perms)

    class Required(BasePermission):
        message = f"requires the permission(s) {', '.join(full)}"

        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(full))

    Required.__name__ = Required.__qualname__ = "Requires_" + "_".join(perms)
    return Required


class CanEnqueueSomething(BasePermission):
    """Holds an enqueue permission for at least one queue: may create jobs (checked per
    task once the body is read) and see the jobs they enqueued."""

    message = "requires a role that may enqueue jobs"

    def has_permission(self, request, view) -> bool:
        from queueing.api.contracts import declared_roles
        from queueing.roles import may_enqueue_anything

        user = request.user
        return bool(user and user.is_authenticated and may_enqueue_anything(user, declared_roles()))
