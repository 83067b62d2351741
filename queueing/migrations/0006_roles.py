"""Create the role groups (queueing/roles.py) with their permissions.

The permissions live in queueing/roles.py only (not in a model's Meta): they are attached
to the Job content type, so ``user.has_perm("queueing.enqueue_billing")`` works as usual.
post_migrate runs the same function again, so a flushed test database gets them back.
"""

from django.db import migrations

from queueing.roles import ROLE_PERMISSIONS, ensure_roles


def create_roles(apps, schema_editor):
    ensure_roles(apps)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("queueing", "0005_audit_event"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
