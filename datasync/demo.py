"""The data sync's demo rows (``manage.py seed_demo``): an Airtable source of customers
pointed at the local Airtable fake (development), and a CSV source of the demo company's
customers, synced once so the admin shows a run history with its record errors.

Sources are named ``demo-…`` and flagged ``is_demo``; ``clear()`` removes them with their
runs, record maps, errors and conflicts. The customers themselves are billing's demo rows
(seeded before: ORDER 40 comes after billing's 10), which the CSV run links by code.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from datasync import engine
from datasync.models import ConflictPolicy, SourceKind, SyncMode, SyncSource

ORDER = 40
AIRTABLE_SOURCE = "demo-airtable-customers"
CSV_SOURCE = "demo-csv-customers"
# A row the CSV carries on purpose, to show how an invalid record is reported.
BROKEN_ROW = {"Code": "DEMO-C9999", "Name": "Row with a typo", "Email": "not-an-email"}

CUSTOMER_FIELDS: dict[str, Any] = {
    "code": {"from": "Code", "transforms": ["strip", "upper"]},
    "name": {"from": "Name", "transforms": ["strip"]},
    "email": {"from": "Email", "transforms": ["strip", "lower"]},
}


def _csv(company: Any) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["Code", "Name", "Email"])
    writer.writeheader()
    for customer in company.customers:
        writer.writerow({"Code": customer.code, "Name": customer.name, "Email": customer.email})
    writer.writerow(BROKEN_ROW)
    return out.getvalue()


def seed(company: Any) -> dict[str, int]:
    """Create what is missing (a second call creates nothing); returns new rows per model."""
    _, airtable_created = SyncSource.objects.get_or_create(
        name=AIRTABLE_SOURCE,
        defaults={
            "kind": SourceKind.AIRTABLE,
            "target": "customers",
            "config": {
                "base": "appTaskyardDemo",
                "table": "Customers",
                "modified_field": "Last Modified",
                "defaults": {"region": company.tax_region},
            },
            "field_map": {**CUSTOMER_FIELDS, "billing_address": "Address"},
            "conflict_policy": ConflictPolicy.MANUAL,
            "is_demo": True,
        },
    )
    csv_source, csv_created = SyncSource.objects.get_or_create(
        name=CSV_SOURCE,
        defaults={
            "kind": SourceKind.CSV,
            "target": "customers",
            "config": {"defaults": {"region": company.tax_region}},
            "field_map": CUSTOMER_FIELDS,
            "csv_content": _csv(company),
            "conflict_policy": ConflictPolicy.SOURCE_WINS,
            "scheduled": False,
            "is_demo": True,
        },
    )
    runs = 0
    if csv_created:
        engine.sync(csv_source.name, SyncMode.FULL)
        runs = 1
    return {"SyncSource": int(airtable_created) + int(csv_created), "SyncRun": runs}


def clear() -> dict[str, int]:
    """Delete the demo sources with their runs, maps, errors and conflicts."""
    _, per_model = SyncSource.objects.filter(is_demo=True).delete()
    return {
        name.split(".")[1]: count
        for name, count in per_model.items()
        if name.startswith("datasync.")
    }
