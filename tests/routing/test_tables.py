"""The tables' own rules (time windows, opening hours) and routing's nightly prune."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from routing import retention, services
from routing.models import Facility, MatrixCache, OptimizationRun, ServicePoint
from routing.svg import run_map

pytestmark = pytest.mark.django_db


def point(**fields: object) -> ServicePoint:
    return ServicePoint(
        code="TB-S1", customer_name="C", lat=52.0, lon=5.0, demand_kg=10, demand_m3=1, **fields
    )


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"window_start": dt.time(8)}, "window_end"),
        ({"window_end": dt.time(10)}, "window_start"),
        ({"window_start": dt.time(10), "window_end": dt.time(8)}, "window_end"),
    ],
)
def test_a_window_needs_both_ends_in_order(window, field):
    with pytest.raises(ValidationError) as err:
        point(**window).full_clean()
    assert field in err.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        point(**window).save()  # the database refuses it too (imports, bulk updates)
    point(window_start=dt.time(8), window_end=dt.time(10)).full_clean()
    point().full_clean()


def test_a_facility_closes_after_it_opens():
    landfill = Facility(code="TB-F1", name="F", kind="landfill", lat=52.0, lon=5.0)
    landfill.opens, landfill.closes = dt.time(17), dt.time(6)
    with pytest.raises(ValidationError) as err:
        landfill.full_clean()
    assert "closes" in err.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        landfill.save()
    landfill.closes = None  # open from 17:00 until midnight
    landfill.full_clean()
    landfill.save()


def test_prune_deletes_expired_matrices_and_slims_old_snapshots(depot_day):
    old_run = services.optimize(None, {**depot_day, "time_limit": 0.3, "seed": 1})
    long_ago = timezone.now() - dt.timedelta(days=retention.SNAPSHOT_RETENTION_DAYS + 1)
    OptimizationRun.objects.filter(pk=old_run.pk).update(created_at=long_ago)
    new_run = services.optimize(None, {**depot_day, "time_limit": 0.3, "seed": 2})
    for key, age in (("old", dt.timedelta(days=8)), ("new", dt.timedelta(days=1))):
        MatrixCache.objects.create(
            key=key,
            provider="osrm",
            size=1,
            distances=[[0]],
            durations=[[0]],
            created_at=timezone.now() - age,
        )

    assert retention.prune() == {"matrices_deleted": 1, "snapshots_slimmed": 1}
    assert list(MatrixCache.objects.values_list("key", flat=True)) == ["new"]
    old_run.refresh_from_db()
    assert "stops" not in old_run.input_snapshot and "pruned" in old_run.input_snapshot
    assert old_run.routes.count() > 0 and old_run.cost is not None  # the plan stays
    assert 'class="route"' in run_map(old_run)  # and its map still draws
    new_run.refresh_from_db()
    assert "stops" in new_run.input_snapshot
    assert retention.prune() == {"matrices_deleted": 0, "snapshots_slimmed": 0}
