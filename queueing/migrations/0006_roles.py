"""Create the role groups (queueing/roles.py) with their permissions.

The permissions live here only (not in a model's Meta): they are attached to the Job
content type, so ``user.has_perm("queueing.enqueue_billing")`` works as usual.
"""

from django.db import migrations

from queueing.roles import ROLE_PERMISSIONS

PERMISSION_NAMES = {
    "view_queue_stats": "Can read queue status, stats and metrics",
    "view_all_jobs": "Can see every job, not only the ones they enqueued",
    "operate_queues": "Can pause, resume and clean queues",
    "manage_recurring": "Can create, change and delete recurring jobs",
    "view_dead_letters": "Can list dead letters",
    "manage_dead_letters": "Can review and replay dead letters",
    "enqueue_any": "Can enqueue any API-enabled task",
    "enqueue_billing": "Can enqueue billing jobs",
    "enqueue_routing": "Can enqueue route optimisation jobs",
    "enqueue_notifications": "Can enqueue notification jobs",
    "enqueue_datasync": "Can enqueue data sync jobs",
    "enqueue_maintenance": "Can enqueue maintenance jobs",
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    job_type, _ = ContentType.objects.get_or_create(app_label="queueing", model="job")
    permissions = {
        codename: Permission.objects.get_or_create(
            content_type=job_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in PERMISSION_NAMES.items()
    }
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([permissions[codename] for codename in codenames])


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("queueing", "0005_audit_event"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
