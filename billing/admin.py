"""Billing's admin: customers, contracts, events, invoices (with PDF links), payments,
credit notes, reminders, and a billing-run page (customers, totals, failures)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from billing import documents, runs, services
from billing.models import (
    BillingPeriod,
    BillingRun,
    CreditNote,
    Customer,
    Document,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    Reminder,
    ServiceContract,
    ServiceEvent,
    TaxRule,
)


class ContractInline(admin.TabularInline):
    model = ServiceContract
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region", "currency", "email", "stripe_customer_id", "is_demo"]
    list_filter = ["region", "currency", "is_demo"]
    search_fields = ["code", "name", "email", "stripe_customer_id"]
    raw_id_fields = ["user"]
    inlines = [ContractInline]


@admin.register(ServiceContract)
class ServiceContractAdmin(admin.ModelAdmin):
    list_display = [
        "customer",
        "plan",
        "container_size",
        "base_monthly_fee",
        "start_date",
        "end_date",
        "proration",
    ]
    list_select_related = ["customer"]
    list_filter = ["container_size", "proration"]
    search_fields = ["customer__code", "customer__name", "plan"]
    raw_id_fields = ["customer"]


@admin.register(ServiceEvent)
class ServiceEventAdmin(admin.ModelAdmin):
    list_display = ["date", "contract", "kind", "quantity", "source", "external_ref"]
    list_select_related = ["contract__customer"]
    list_filter = ["kind", "source"]
    date_hierarchy = "date"
    search_fields = ["contract__customer__code", "external_ref"]
    raw_id_fields = ["contract"]


@admin.register(TaxRule)
class TaxRuleAdmin(admin.ModelAdmin):
    list_display = ["region", "name", "rate", "valid_from", "valid_to"]
    list_filter = ["region"]


@admin.register(BillingPeriod)
class BillingPeriodAdmin(admin.ModelAdmin):
    list_display = ["label", "start", "end"]


class LineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = [
        "position",
        "kind",
        "description",
        "quantity",
        "unit_price",
        "net",
        "tax_rate",
        "tax",
        "total",
    ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    readonly_fields = [
        "idempotency_key",
        "stripe_payment_intent_id",
        "status",
        "amount",
        "currency",
        "error",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Issued invoices are read-only: corrections are credit notes (action)."""

    list_display = [
        "number",
        "customer",
        "period",
        "status",
        "total",
        "currency",
        "due_date",
        "pdf_links",
    ]
    list_select_related = ["customer", "period"]
    list_filter = ["status", "period", "currency"]
    search_fields = ["number", "customer__code", "customer__name"]
    inlines = [LineInline, PaymentInline]
    actions = ["credit_in_full", "render_pdfs"]
    readonly_fields = [
        "number", "customer", "period", "run", "status", "issue_date", "due_date", "currency",
        "tax_region", "subtotal", "tax_total", "total", "billing_address", "paid_at", "pdf_links",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="PDF")
    def pdf_links(self, invoice: Invoice) -> str:
        kinds = ["invoice"] + (["receipt"] if invoice.paid_at else [])
        return format_html_join(
            " ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:billing_invoice_pdf", args=[invoice.id, kind]), kind)
                for kind in kinds
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:invoice_id>/pdf/<str:kind>/",
                self.admin_site.admin_view(self.pdf_view),
                name="billing_invoice_pdf",
            )
        ]
        return own + super().get_urls()

    def pdf_view(self, request: HttpRequest, invoice_id: int, kind: str) -> HttpResponse:
        invoice = get_object_or_404(Invoice, id=invoice_id)
        if not self.has_view_permission(request, invoice) or kind not in ("invoice", "receipt"):
            return HttpResponse(status=404)
        document = Document.objects.filter(invoice=invoice, kind=kind).first()
        if document is None:
            with transaction.atomic():
                documents.request(invoice.id, kind)
            self.message_user(
                request,
                f"The {kind} PDF of {invoice.number} is being rendered; try again in a minute.",
            )
            return HttpResponseRedirect(reverse("admin:billing_invoice_change", args=[invoice.id]))
        response = HttpResponse(bytes(document.content), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{document.filename}"'
        return response

    @admin.action(description="Credit the selected invoices in full (credit note)")
    def credit_in_full(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        credited = 0
        for invoice in queryset.exclude(status=InvoiceStatus.VOID):
            services.credit_invoice(invoice, reason=f"credited by {request.user} in the admin")
            credited += 1
        self.message_user(request, f"{credited} credit note(s) issued.", messages.SUCCESS)

    @admin.action(description="Render the invoice PDFs (20 a minute)")
    def render_pdfs(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        with transaction.atomic():
            for invoice_id in queryset.values_list("id", flat=True):
                documents.request(invoice_id, "invoice")
        self.message_user(request, f"{queryset.count()} PDF job(s) enqueued.")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = [
        "invoice",
        "status",
        "amount",
        "currency",
        "stripe_payment_intent_id",
        "created_at",
    ]
    list_select_related = ["invoice"]
    list_filter = ["status"]
    search_fields = ["invoice__number", "stripe_payment_intent_id", "idempotency_key"]
    readonly_fields = [field.name for field in Payment._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(CreditNote)
class CreditNoteAdmin(admin.ModelAdmin):
    list_display = ["number", "invoice", "reason", "total", "issue_date"]
    list_select_related = ["invoice"]
    search_fields = ["number", "invoice__number"]
    readonly_fields = [field.name for field in CreditNote._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued from an invoice (action), so the amounts always match


@admin.register(Reminder)
class ReminderAdmin(admin.ModelAdmin):
    list_display = ["invoice", "offset_days", "send_at", "status", "sent_at"]
    list_select_related = ["invoice"]
    list_filter = ["status", "offset_days"]
    raw_id_fields = ["invoice"]


@admin.register(BillingRun)
class BillingRunAdmin(admin.ModelAdmin):
    """The billing-run page: per run, its customers, invoice totals and failures."""

    list_display = ["id", "period", "customer", "started_at", "customers_enqueued", "invoice_count"]
    list_select_related = ["period", "customer"]
    readonly_fields = [
        "period",
        "customer",
        "started_at",
        "job_id",
        "customers_enqueued",
        "outcome",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Invoices")
    def invoice_count(self, run: BillingRun) -> int:
        return run.invoices.count()

    @admin.display(description="Outcome")
    def outcome(self, run: BillingRun) -> str:
        summary = runs.summary(run)
        totals = format_html_join(
            "",
            "<li>{} invoices, {} {}</li>",
            ((t["count"], t["total"], t["currency"]) for t in summary["totals"]),
        )
        failures = format_html_join(
            "",
            "<li>customer {}: {}</li>",
            ((f["customer_id"], f["error"]) for f in summary["failed"]),
        )
        return format_html(
            "<p>{} customers enqueued, {} invoiced, {} still waiting, {} failed</p>"
            "<ul>{}</ul><p>Failures:</p><ul>{}</ul>",
            summary["customers"], summary["invoices"], summary["waiting"], len(summary["failed"]),
            totals, failures or "none",
        )  # fmt: skip
