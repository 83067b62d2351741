"""Fixtures of the API tests: one user per role, JWT-authenticated clients, and fresh
throttle windows for every test."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from queueing.roles import ROLE_PERMISSIONS
from tests.harness import delete_keys

ROLES = tuple(ROLE_PERMISSIONS)  # admin, manager, dispatcher, customer, driver


@pytest.fixture(autouse=True)
def fresh_throttles():
    delete_keys("taskyard:rate:api:*")


@pytest.fixture(autouse=True)
def audit_chain_intact(request):
    """After every API test that used the database, `manage.py verify_audit` would pass:
    every audited action (job creations, cancels, replaces, queue operations...) left an
    intact hash chain."""
    yield
    # test_audit.py breaks the chain on purpose, to see it reported.
    if request.node.get_closest_marker("django_db") is None or request.module.__name__.endswith(
        "test_audit"
    ):
        return
    from queueing.audit import verify

    checked, broken = verify()
    assert broken is None, f"audit chain broken after {checked} events: {broken}"


def make_user(role: str) -> User:
    user = User.objects.create_user(f"{role}-user", password="correct horse battery")
    user.groups.add(Group.objects.get(name=role))
    return user


def client_for(user: User | None) -> APIClient:
    """A client that sends a real JWT access token (JWTAuthentication checks it)."""
    client = APIClient()
    if user is not None:
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def users(db) -> dict[str, User]:
    return {role: make_user(role) for role in ROLES}


@pytest.fixture
def clients(users) -> dict[str, APIClient]:
    return {"anonymous": client_for(None), **{role: client_for(u) for role, u in users.items()}}
