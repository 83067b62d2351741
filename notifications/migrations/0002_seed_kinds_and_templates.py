from django.db import migrations


def seed(apps, schema_editor):
    from notifications.seed import seed as seed_rows

    seed_rows(apps.get_model("notifications", "MessageKind"), apps.get_model("notifications", "Template"))


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
