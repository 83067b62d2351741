"""Property-based fuzzing with schemathesis: every operation of the OpenAPI schema, called
with generated (valid and invalid) input with the tokens of two roles (admin, dispatcher),
never answers 5xx, and every error is in the API's error shape; so do deeply nested and
duplicate-key JSON bodies sent to every operation that takes a body."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from config.wsgi import application
from queueing.control.pause import resume_queue
from queueing.models import QueueState
from tests.api.conftest import client_for, make_user

EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def role_headers(db, settings) -> dict[str, dict[str, str]]:
    # Generous limits: the fuzzer sends hundreds of requests as one user.
    settings.API_THROTTLE_RATES = dict.fromkeys(settings.API_THROTTLE_RATES, "100000/m")
    headers = {
        role: {"Authorization": client_for(make_user(role))._credentials["HTTP_AUTHORIZATION"]}
        for role in ("admin", "dispatcher")
    }
    yield headers
    for state in QueueState.objects.filter(paused=True):
        resume_queue(state.name)


def error_shape_failures(where: str, response) -> list[str]:
    if response.status_code >= 500:
        return [f"{where} -> {response.status_code}: {response.text[:300]}"]
    if response.status_code >= 400 and response.status_code != 405:
        body = response.json()
        if set(body.get("error", {})) != {"code", "message", "fields"}:
            return [f"{where} -> {response.status_code}: {body}"]
    return []


# Path parameters filled with values that exist or parse (the body is what is tested).
PATH_VALUES = {
    "job_id": "00000000-0000-0000-0000-000000000000",
    "letter_id": "1",
    "recurring_id": "1",
    "queue": "isolated",
}
# Bodies no schema describes: nested far deeper than any request, and a repeated key.
HOSTILE_BODIES = ("[" * 5000 + "]" * 5000, '{"task": "a", "task": "queueing.ping", "args": {}}')


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ["admin", "dispatcher"])
def test_no_operation_answers_a_server_error(role_headers, role):
    headers = role_headers[role]
    # One test walking the operations: schemathesis's own pytest plugin does not run
    # under pytest 9 ("'Function' object has no attribute '_nodeid'").
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, headers=role_headers["admin"]
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            response = case.call(headers=headers)
            failures.extend(error_shape_failures(f"{case.method} {case.formatted_path}", response))

        check()
    assert not failures, "\n".join(failures[:20])


@pytest.mark.django_db(transaction=True)
def test_hostile_bodies_never_answer_a_server_error(role_headers):
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, headers=role_headers["admin"]
    )
    client = APIClient()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() not in ("POST", "PATCH", "PUT"):
            continue
        path = operation.path
        for name, value in PATH_VALUES.items():
            path = path.replace("{" + name + "}", value)
        for role, headers in role_headers.items():
            for body in HOSTILE_BODIES:
                response = getattr(client, operation.method.lower())(
                    path,
                    body,
                    content_type="application/json",
                    HTTP_AUTHORIZATION=headers["Authorization"],
                )
                failures += error_shape_failures(f"{role} {operation.method} {path}", response)
    assert not failures, "\n".join(failures[:20])
