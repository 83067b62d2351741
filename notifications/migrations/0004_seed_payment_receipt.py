from django.db import migrations


def seed(apps, schema_editor):
    # The seed gained payment_receipt (billing's receipts); seed() creates only what is
    # missing, so databases migrated before get it and the others are unchanged.
    from notifications.seed import seed as seed_rows

    seed_rows(apps.get_model("notifications", "MessageKind"), apps.get_model("notifications", "Template"))


class Migration(migrations.Migration):
    dependencies = [("notifications", "0003_recipient_user")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
