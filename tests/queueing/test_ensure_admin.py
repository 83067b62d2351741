from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run() -> str:
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def test_creates_one_admin_with_a_printed_password_then_leaves_it_alone(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    first = run()
    password = first.split("Admin user created: admin / ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(password)

    second = run()
    assert "already exists" in second
    assert password not in second
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_password_from_environment_is_used_and_not_printed(monkeypatch):
    monkeypatch.setenv("ADMIN_PASSWORD", "correct-horse-battery")
    output = run()
    assert "correct-horse-battery" not in output
    assert get_user_model().objects.get(username="admin").check_password("correct-horse-battery")
