"""Billing's endpoints under /api/v1/queue/ (mounted by the platform).

POST billing                          bill a period or one customer (admin, manager);
                                      {"dry_run": true}: 200 with the invoices it
                                      would issue, nothing written or enqueued
GET  billing/invoices                 invoices (a customer sees only their own)
GET  billing/invoices/<id>            one invoice with its lines and payments
GET  billing/invoices/<id>/pdf        the invoice PDF (?kind=receipt: the receipt)
POST billing/events                   record a completed pickup or extra (routing, a
                                      driver's app, an office person): admin, manager,
                                      dispatcher, driver; idempotent on external_ref
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import documents, events, runs, services
from billing.models import (
    Document,
    DocumentKind,
    EventKind,
    EventSource,
    Invoice,
    InvoiceLine,
    Payment,
    ServiceEvent,
)
from queueing import JobEndpoint

# Roles that see every customer's invoices; anyone else sees those of the customers
# linked to their login (Customer.user).
STAFF_ROLES = ("admin", "manager")


def visible_invoices(user: Any) -> QuerySet[Invoice]:
    invoices = Invoice.objects.select_related("customer", "period")
    if user.is_superuser or user.groups.filter(name__in=STAFF_ROLES).exists():
        return invoices
    return invoices.filter(customer__user=user)


class BillingRunEndpoint(JobEndpoint):
    """The run job's endpoint; a dry run is answered at once instead of enqueued."""

    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict) and request.data.get("dry_run") is True:
            contract = self.get_serializer(data=request.data)
            contract.is_valid(raise_exception=True)
            arguments = contract.validated_data
            try:
                preview = runs.preview(
                    arguments.get("period", "previous"), arguments.get("customer", "")
                )
            except services.BillingError as exc:
                raise serializers.ValidationError({"customer": [str(exc)]}) from None
            return Response(preview, status=status.HTTP_200_OK)
        return super().post(request)


class LineSerializer(serializers.ModelSerializer[InvoiceLine]):
    class Meta:
        model = InvoiceLine
        fields = [
            "position",
            "description",
            "quantity",
            "unit_price",
            "net",
            "tax_rate",
            "tax",
            "total",
        ]


class PaymentSerializer(serializers.ModelSerializer[Payment]):
    class Meta:
        model = Payment
        fields = [
            "id",
            "status",
            "problem",
            "amount",
            "currency",
            "stripe_payment_intent_id",
            "created_at",
        ]


class InvoiceSerializer(serializers.ModelSerializer[Invoice]):
    customer = serializers.CharField(source="customer.code")
    period = serializers.CharField(source="period.label")

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "customer",
            "period",
            "status",
            "issue_date",
            "due_date",
            "currency",
            "subtotal",
            "tax_total",
            "total",
            "paid_at",
        ]


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = LineSerializer(many=True)
    payments = PaymentSerializer(many=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "tax_region", "lines", "payments"]


class InvoiceListView(ListAPIView[Invoice]):
    serializer_class = InvoiceSerializer
    query_params = frozenset({"page", "period", "status", "customer"})

    def get_queryset(self) -> QuerySet[Invoice]:
        invoices = visible_invoices(self.request.user)
        params = self.request.query_params
        if params.get("period"):
            invoices = invoices.filter(period__label=params["period"])
        if params.get("status"):
            invoices = invoices.filter(status=params["status"])
        if params.get("customer"):
            invoices = invoices.filter(customer__code=params["customer"])
        return invoices.order_by("-issue_date", "-number")


class InvoiceDetailView(RetrieveAPIView[Invoice]):
    serializer_class = InvoiceDetailSerializer
    lookup_url_kwarg = "invoice_id"

    def get_queryset(self) -> QuerySet[Invoice]:
        return visible_invoices(self.request.user).prefetch_related("lines", "payments")


class InvoicePdfView(APIView):
    query_params = frozenset({"kind"})

    @extend_schema(responses={(200, "application/pdf"): bytes})
    def get(self, request: Request, invoice_id: int) -> HttpResponse:
        invoice = get_object_or_404(visible_invoices(request.user), id=invoice_id)
        kind = request.query_params.get("kind", DocumentKind.INVOICE)
        if kind not in DocumentKind.values:
            raise serializers.ValidationError(
                {"kind": [f"one of {', '.join(DocumentKind.values)}"]}
            )
        if kind == DocumentKind.RECEIPT and invoice.paid_at is None:
            return Response({"detail": "the invoice is not paid: no receipt"}, status=404)
        document = Document.objects.filter(invoice=invoice, kind=kind).first()
        if document is None:
            return pdf_pending(invoice, kind)
        response = HttpResponse(bytes(document.content), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{document.filename}"'
        return response


def pdf_pending(invoice: Invoice, kind: str) -> Response:
    """202 with the rendering job (enqueued now, or the one already waiting)."""
    job = documents.request(invoice.id, kind)
    response = Response(
        {"detail": "the PDF is being rendered; try again shortly", "job": str(job.id)},
        status=status.HTTP_202_ACCEPTED,
    )
    response["Retry-After"] = "30"
    response["Location"] = reverse("queue-api:job-detail", args=[job.id])
    return response


# Who may report completed service: routing's dispatchers and the drivers themselves,
# besides the office (admin, manager).
EVENT_ROLES = ("admin", "manager", "dispatcher", "driver")


class MayRecordEvents(BasePermission):
    message = "your role may not record service events"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_superuser or user.groups.filter(name__in=EVENT_ROLES).exists())


class EventReportSerializer(serializers.Serializer):
    external_ref = serializers.CharField(max_length=100)
    customer = serializers.CharField(max_length=40)
    contract = serializers.CharField(max_length=40, required=False, allow_blank=True)
    date = serializers.DateField()
    kind = serializers.ChoiceField(choices=EventKind.choices, default=EventKind.PICKUP)
    quantity = serializers.DecimalField(
        max_digits=12, decimal_places=3, min_value=Decimal("0.001"), default=Decimal("1")
    )
    # "import" is datasync's: a report over the API comes from routing, a driver or a person.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=[EventSource.ROUTING, EventSource.DRIVER, EventSource.MANUAL],
        default=EventSource.DRIVER,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in sorted(unknown)})
        return attrs


class ServiceEventSerializer(serializers.ModelSerializer[ServiceEvent]):
    customer = serializers.CharField(source="contract.customer.code")
    contract = serializers.CharField(source="contract.code", allow_null=True)

    class Meta:
        model = ServiceEvent
        fields = [
            "id",
            "external_ref",
            "customer",
            "contract",
            "date",
            "kind",
            "quantity",
            "source",
        ]


class AlreadyInvoiced(APIException):
    """409 in the API's error shape (code ``conflict``), the reason per field."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "the event's period is already invoiced"


class RecordEventView(APIView):
    """Record one completed pickup or extra: 201 when new, 200 when it was known (same
    values: unchanged; other values on an unbilled event: updated), 400 naming the field
    (unknown customer, no contract that day...), 409 when the event or its period is
    already invoiced (nothing written)."""

    permission_classes = [MayRecordEvents]

    @extend_schema(request=EventReportSerializer, responses={200: ServiceEventSerializer})
    def post(self, request: Request) -> Response:
        report = EventReportSerializer(data=request.data)
        report.is_valid(raise_exception=True)
        data = report.validated_data
        try:
            event, outcome = events.record_event(
                external_ref=data["external_ref"],
                customer=data["customer"],
                contract=data.get("contract") or None,
                day=data["date"],
                kind=data["kind"],
                quantity=data["quantity"],
                source=data["source"],
            )
        except events.EventBilled as exc:
            raise AlreadyInvoiced(exc.errors) from None
        except events.EventRefused as exc:
            raise serializers.ValidationError(exc.errors) from None
        body = {**ServiceEventSerializer(event).data, "outcome": outcome}
        created = outcome == "created"
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


urlpatterns = [
    path("billing/events", RecordEventView.as_view(), name="billing-events"),
    path(
        "billing",
        BillingRunEndpoint.as_view(task="billing.run_billing"),
        name="billing-run",
    ),
    path("billing/invoices", InvoiceListView.as_view(), name="billing-invoices"),
    path(
        "billing/invoices/<int:invoice_id>",
        InvoiceDetailView.as_view(),
        name="billing-invoice",
    ),
    path(
        "billing/invoices/<int:invoice_id>/pdf",
        InvoicePdfView.as_view(),
        name="billing-invoice-pdf",
    ),
]
