"""Seeding and clearing the demo company across apps (`manage.py seed_demo`).

Each installed app may have a ``demo`` module with ``ORDER`` (seeded in ascending order,
cleared in descending), ``seed(company) -> dict[str, int]`` and ``clear() ->
dict[str, int]``. Apps mark their demo rows themselves (codes starting ``DEMO-``), so a
clear removes exactly them and leaves the operator's own data alone. The platform's own
part (queueing/demo.py: a day of queue statistics, yesterday's report) is marked
``is_demo``.
"""

from __future__ import annotations

import logging
from importlib import import_module
from types import ModuleType
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import module_has_submodule

from maintenance.demo_company import DemoCompany, build_company
from maintenance.models import DemoDataset

logger = logging.getLogger(__name__)


def demo_modules() -> list[tuple[str, ModuleType]]:
    """(app label, demo module) of every installed app that has one, in seeding order."""
    found = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "demo"):
            module = import_module(f"{config.name}.demo")
            if callable(getattr(module, "seed", None)) and callable(getattr(module, "clear", None)):
                found.append((config.label, module))
    return sorted(found, key=lambda item: (getattr(item[1], "ORDER", 100), item[0]))


def business_today() -> DemoCompany:
    today = timezone.now().astimezone(ZoneInfo(settings.BUSINESS_TIME_ZONE)).date()
    return build_company(today)


def seed(company: DemoCompany | None = None) -> dict[str, dict[str, int]]:
    """Seed every app's demo rows (each app in its own transaction, so one app's failure
    leaves the others' rows whole) and record that the demo was seeded."""
    company = company or business_today()
    counts: dict[str, dict[str, int]] = {}
    for label, module in demo_modules():
        with transaction.atomic():
            counts[label] = dict(module.seed(company) or {})
        logger.info("demo data for %s: %s", label, counts[label])
    dataset = DemoDataset.objects.order_by("pk").first() or DemoDataset()
    dataset.seeded_at, dataset.counts = timezone.now(), counts
    dataset.save()
    return counts


def clear() -> dict[str, dict[str, int]]:
    """Remove every app's demo rows, last-seeded app first (its rows may point at an
    earlier app's)."""
    counts: dict[str, dict[str, int]] = {}
    for label, module in reversed(demo_modules()):
        with transaction.atomic():
            counts[label] = dict(module.clear() or {})
    DemoDataset.objects.update(cleared_at=timezone.now())
    return counts


def was_seeded() -> bool:
    return DemoDataset.objects.filter(seeded_at__isnull=False).exists()
