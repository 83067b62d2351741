"""Email suppressions are stored lower-cased (Suppression.address_key) and looked up
so: rows written before in another case are lower-cased, a duplicate of one already
lower-cased dropped (the suppression stands either way)."""

from django.db import migrations


def lowercase(apps, schema_editor):
    Suppression = apps.get_model("notifications", "Suppression")
    for row in Suppression.objects.filter(channel="email").order_by("id"):
        key = row.address.strip().lower()
        if key == row.address:
            continue
        if Suppression.objects.filter(channel="email", address=key).exists():
            row.delete()
        else:
            Suppression.objects.filter(id=row.id).update(address=key)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0004_seed_payment_receipt")]

    operations = [migrations.RunPython(lowercase, migrations.RunPython.noop)]
