"""Data sync fixtures: the Airtable and REST fakes over HTTP, sources pointed at them,
and a provider guard without state left by other tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyairtable import Api

from datasync.models import ConflictPolicy, SourceKind, SyncSource
from devstack.fakes import airtable, restapi
from tests.factories import forget_provider

BASE = "appSYNCTEST"
TABLE = "Customers"
MODIFIED = "Last Modified"
CUSTOMER_MAP: dict[str, Any] = {
    "code": {"from": "Code", "transforms": ["strip", "upper"]},
    "name": {"from": "Name", "transforms": ["strip"]},
    "email": {"from": "Email", "transforms": ["strip", "lower"]},
    "payment_terms_days": {"from": "Terms", "transforms": ["int"]},
}


def customer_row(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "Code": f"AT-{n:05d}",
        "Name": f"Airtable customer {n}",
        "Email": f"at{n}@example.org",
        "Terms": 14,
        **fields,
    }


@pytest.fixture
def guard(settings) -> Iterator[None]:
    """The guard's Airtable and REST ceilings raised (the tests that provoke 429s set
    their own), and no breaker or rate state from another test."""
    providers = dict(settings.TASKYARD_PROVIDERS)
    providers["airtable"] = {**providers["airtable"], "rate_limit": "10000/s"}
    providers["datasync-rest"] = {**providers["datasync-rest"], "rate_limit": "10000/s"}
    settings.TASKYARD_PROVIDERS = providers
    forget_provider("airtable")
    forget_provider("datasync-rest")
    yield
    forget_provider("airtable")
    forget_provider("datasync-rest")


@pytest.fixture
def airtable_fake() -> Iterator[airtable.AirtableFake]:
    with airtable.serve(rate_limit=100_000, last_modified_field=MODIFIED) as fake:
        yield fake


@pytest.fixture
def rest_fake() -> Iterator[restapi.RestApiFake]:
    with restapi.serve() as fake:
        yield fake


def airtable_source(fake_url: str, **fields: Any) -> SyncSource:
    values: dict[str, Any] = {
        "name": "airtable-customers",
        "kind": SourceKind.AIRTABLE,
        "target": "customers",
        "config": {
            "base": BASE,
            "table": TABLE,
            "modified_field": MODIFIED,
            "endpoint_url": fake_url,
            "defaults": {"region": "NL"},
        },
        "field_map": CUSTOMER_MAP,
        "conflict_policy": ConflictPolicy.MANUAL,
        **fields,
    }
    return SyncSource.objects.create(**values)


def airtable_table(fake_url: str, table: str = TABLE) -> Any:
    """The fake's table through pyairtable, as a person editing Airtable would."""
    return Api("patTestToken", endpoint_url=fake_url, retry_strategy=None).table(BASE, table)
