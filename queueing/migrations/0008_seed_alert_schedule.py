import importlib

from django.db import migrations

# The same idempotent seeding as 0004: it creates the schedules added since (the alert
# check) and leaves existing ones, with any operator edits, alone.
seed = importlib.import_module("queueing.migrations.0004_seed_schedules").seed


class Migration(migrations.Migration):
    dependencies = [("queueing", "0007_alert")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
