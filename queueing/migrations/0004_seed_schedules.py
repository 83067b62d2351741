from django.db import migrations


def seed(apps, schema_editor):
    """Schedules are now seeded after every migrate (post_migrate) from each app's
    schedules.py (queueing/control/schedules.py); this migration stays as a no-op so
    databases migrated before keep a consistent history."""


class Migration(migrations.Migration):
    dependencies = [
        ("queueing", "0003_queue_state"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
