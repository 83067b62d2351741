"""Jobs of the sample app, declared only with the public names of queueing."""

from __future__ import annotations

import stripe
from celery import shared_task
from django.conf import settings
from rest_framework import serializers

from queueing import Contract, TransientError, job, provider_call


class PlanCollectionArgs(Contract):
    route_id = serializers.IntegerField(min_value=1)
    note = serializers.CharField(max_length=100, required=False)


@job(
    queue="routing",
    name="sampleapp.plan_collection",
    api=PlanCollectionArgs,
    roles=("dispatcher",),
    unique_key="collection:{route_id}",
    retry={"max_attempts": 2, "base_delay": 0.1},
)
def plan_collection(route_id: int, note: str = "") -> dict:
    """Pretend to plan the collection round of one route."""
    return {"route_id": route_id, "note": note, "planned": True}


@job(queue="billing", name="tests.declared_on_billing")
def declared_on_billing(value: int) -> int:
    """Declared on billing, named outside it: routing follows the declaration."""
    return value


@shared_task(name="tests.plain_queue_billing", queue="billing")
def plain_queue_billing(value: int) -> int:
    """Plain Celery declaration naming a queue: the ledger honours it."""
    return value


@shared_task(name="billing.sample_run_invoices")
def plain_named_like_billing(value: int) -> int:
    """Plain Celery, no queue: goes to the queue named after the app defining it."""
    return value


@job(queue="sampleapp", name="sampleapp.flaky", retry={"max_attempts": 2, "base_delay": 0.1})
def flaky(key: str) -> None:
    """Always fails with an error worth retrying: two attempts, then a dead letter."""
    raise TransientError(f"{key}: the remote is down")


@job(
    queue="sampleapp",
    name="sampleapp.rejects",
    retry={"max_attempts": 5, "base_delay": 0.1},
    permanent_for=(ValueError,),
)
def rejects(value: str) -> None:
    """Fails with an error the job declares permanent: one attempt only."""
    raise ValueError(f"{value!r} is not a route")


@job(
    queue="isolated",
    name="sampleapp.charge",
    providers=("fakepay",),
    retry={"max_attempts": 8, "base_delay": 0.2},
)
def charge(order: int) -> str:
    """Create a customer at the payment provider, through the provider guard."""
    base_url = settings.TASKYARD_PROVIDERS["fakepay"]["base_url"]
    client = stripe.StripeClient(
        "sk_test_taskyard",
        base_addresses={"api": base_url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=2),
    )
    with provider_call("fakepay"):
        return client.v1.customers.create(params={"metadata": {"order": str(order)}}).id
