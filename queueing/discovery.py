"""Finding what the project's apps declare: their ``api.py`` and ``schedules.py``.

Only the project's own apps count (under BASE_DIR, outside any virtualenv), so a library
that happens to ship an ``api`` module (django.contrib.messages does) is never mounted.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from django.apps import AppConfig, apps
from django.conf import settings
from django.utils.module_loading import module_has_submodule


def is_project_app(config: AppConfig) -> bool:
    try:
        relative = Path(config.path).resolve().relative_to(Path(settings.BASE_DIR).resolve())
    except ValueError:
        return False
    return not any(part.startswith(".") or part == "site-packages" for part in relative.parts)


def app_modules(name: str) -> Iterator[tuple[AppConfig, ModuleType]]:
    """(app, its ``<app>.<name>`` module) for each project app that has one, in
    INSTALLED_APPS order; an import error in the module propagates."""
    for config in apps.get_app_configs():
        if is_project_app(config) and module_has_submodule(config.module, name):
            yield config, importlib.import_module(f"{config.name}.{name}")
