"""Billing's admin: customers, contracts, events, invoices (with PDF links), payments,
credit notes, reminders, and a billing-run page (customers, totals, failures).

Operator actions (bill a period, charge again, credit in full) ask for confirmation,
need their permission (``billing.add_billingrun``, ``billing.add_payment``,
``billing.add_creditnote``) and write an audit event (queueing's hash-chained trail) in
the transaction that enqueues or issues what they do."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from billing import documents, events, runs, services
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
    PaymentStatus,
    Reminder,
    ServiceContract,
    ServiceEvent,
    TaxRule,
)
from queueing import confirm_action, record_request

# "Bill a period" for selected customers enqueues one run per customer (as the API's
# {"customer": ...}); more than this at once: bill the period for everyone instead.
BILL_SELECTED_MAX = 100


def audit(request: HttpRequest, action: str, target: tuple[str, object], **fields: Any) -> None:
    record_request(request, action, target, reason="via admin", **fields)


def may_bill(request: HttpRequest) -> bool:
    """Starting billing runs: who may add a BillingRun (admins; give managers the
    permission to let them)."""
    return request.user.has_perm("billing.add_billingrun")


def bill_period_page(
    modeladmin: admin.ModelAdmin, request: HttpRequest, customers: list[Customer],
    error: str = "",
) -> TemplateResponse:  # fmt: skip
    """The "Bill a period" form: the period (the previous month by default) and whom."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Bill a period",
        "opts": modeladmin.model._meta,
        "customers": customers[:200],  # as the platform's confirmation page lists
        "count": len(customers),
        "ids": [str(c.id) for c in customers],
        "period": request.POST.get("period") or services.resolve_period_label("previous"),
        "error": error,
    }
    return TemplateResponse(request, "admin/billing/bill_period.html", context)


def bill_period(
    modeladmin: admin.ModelAdmin, request: HttpRequest, customers: list[Customer]
) -> HttpResponse:
    """Ask, then enqueue the runs ("all customers" when ``customers`` is empty)."""
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return bill_period_page(modeladmin, request, customers)
    asked = request.POST.get("period", "").strip()
    try:
        label = services.resolve_period_label(asked)
    except ValueError:
        return bill_period_page(modeladmin, request, customers, f"{asked}: not a month (YYYY-MM)")
    with transaction.atomic():
        for code in [c.code for c in customers] or [""]:
            job = runs.request_run(label, code, user=request.user)
            audit(
                request,
                "billing.run",
                ("billing_period", label),
                after={"customer": code or "all", "job": str(job.id)},
            )
    whom = f"{len(customers)} customer(s)" if customers else "all customers"
    modeladmin.message_user(
        request,
        f"Billing of {label} for {whom} enqueued; customers already invoiced for it are "
        "skipped. Its run appears under Billing runs.",
        messages.SUCCESS,
    )
    return HttpResponseRedirect(reverse("admin:billing_billingrun_changelist"))


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
    actions = ["bill_selected"]

    def has_bill_permission(self, request: HttpRequest) -> bool:
        return may_bill(request)

    @admin.action(description="Bill a period for the selected customers", permissions=["bill"])
    def bill_selected(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse:
        customers = list(queryset.order_by("code")[: BILL_SELECTED_MAX + 1])
        if len(customers) > BILL_SELECTED_MAX:
            self.message_user(
                request,
                f"More than {BILL_SELECTED_MAX} customers selected: use Billing runs → "
                "Bill a period (all customers) instead.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        return bill_period(self, request, customers)


@admin.register(ServiceContract)
class ServiceContractAdmin(admin.ModelAdmin):
    list_display = [
        "customer",
        "code",
        "plan",
        "container_size",
        "base_monthly_fee",
        "start_date",
        "end_date",
        "proration",
    ]
    list_select_related = ["customer"]
    list_filter = ["container_size", "proration"]
    search_fields = ["code", "customer__code", "customer__name", "plan"]
    raw_id_fields = ["customer"]


class ServiceEventForm(forms.ModelForm):
    """An event typed in by a person follows the rules of imports and drivers
    (billing/events.py): nothing new or changed in a month already invoiced."""

    class Meta:
        model = ServiceEvent
        fields = ["contract", "kind", "date", "quantity", "source", "external_ref"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        contract, day = cleaned.get("contract"), cleaned.get("date")
        if contract is None or day is None or not self.has_changed():
            return cleaned
        original = (
            ServiceEvent.objects.select_related("contract").filter(pk=self.instance.pk).first()
            if self.instance.pk
            else None
        )
        for field, problems in events.billing_problems(original, contract, day).items():
            self.add_error(field if field in self.fields else None, problems)
        return cleaned


@admin.register(ServiceEvent)
class ServiceEventAdmin(admin.ModelAdmin):
    form = ServiceEventForm
    list_display = ["date", "contract", "kind", "quantity", "source", "external_ref"]
    list_select_related = ["contract__customer"]
    list_filter = ["kind", "source"]
    date_hierarchy = "date"
    search_fields = ["contract__customer__code", "contract__code", "external_ref"]
    raw_id_fields = ["contract"]

    def _billed(self, obj: ServiceEvent | None) -> bool:
        return (
            obj is not None
            and events.invoice_covering(obj.contract.customer_id, obj.date) is not None
        )

    # An event on an issued invoice is read-only (the invoice is never edited: credit it).
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not self._billed(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and not self._billed(obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Bulk deletion does not ask per event whether it is billed: one at a time.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


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
    actions = ["credit_in_full", "charge_again", "render_pdfs"]
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

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_creditnote")

    def has_charge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_payment")

    @admin.action(
        description="Credit the selected invoices in full (credit note)", permissions=["credit"]
    )
    def credit_in_full(
        self, request: HttpRequest, queryset: QuerySet[Invoice]
    ) -> TemplateResponse | None:
        page = confirm_action(
            self,
            request,
            queryset,
            "credit_in_full",
            "credit these invoices in full; unpaid ones become void (a credit note cannot "
            "be taken back)",
        )
        if page:
            return page
        credited, refused = [], []
        for invoice in queryset.order_by("number"):
            try:
                with transaction.atomic():
                    note = services.credit_invoice(
                        invoice, reason=f"credited by {request.user} in the admin"
                    )
                    audit(
                        request,
                        "invoice.credit",
                        ("invoice", invoice.number),
                        before={"status": invoice.status},
                        after={"credit_note": note.number, "total": note.total},
                    )
            except services.BillingError as exc:
                refused.append(str(exc))
                continue
            credited.append(note.number)
        if credited:
            self.message_user(request, f"{len(credited)} credit note(s) issued.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not credited: {reason}.", messages.ERROR)
        return None

    @admin.action(
        description="Charge again (issued, unpaid invoices; new card or after a failure)",
        permissions=["charge"],
    )
    def charge_again(
        self, request: HttpRequest, queryset: QuerySet[Invoice]
    ) -> TemplateResponse | None:
        page = confirm_action(
            self,
            request,
            queryset,
            "charge_again",
            "charge these invoices again through Stripe (a payment still in flight is "
            "asked again with its own idempotency key, so it is never charged twice)",
        )
        if page:
            return page
        enqueued, skipped = 0, []
        for invoice in queryset.select_related("customer").order_by("number"):
            reason = charge_refusal(invoice)
            if reason:
                skipped.append(f"{invoice.number} ({reason})")
                continue
            with transaction.atomic():
                job = runs.request_charge(invoice.id, user=request.user)
                audit(
                    request,
                    "invoice.charge",
                    ("invoice", invoice.number),
                    after={"job": str(job.id)},
                )
            enqueued += 1
        self.message_user(request, f"{enqueued} charge job(s) enqueued.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Not charged: {', '.join(skipped)}.", messages.WARNING)
        return None

    @admin.action(description="Render the invoice PDFs (20 a minute)")
    def render_pdfs(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        with transaction.atomic():
            for invoice_id in queryset.values_list("id", flat=True):
                documents.request(invoice_id, "invoice")
        self.message_user(request, f"{queryset.count()} PDF job(s) enqueued.")


def charge_refusal(invoice: Invoice) -> str:
    """Why "Charge again" leaves ``invoice`` alone ("" when it charges)."""
    if invoice.status != InvoiceStatus.ISSUED:
        return f"it is {invoice.status}"
    if invoice.total <= 0:
        return "nothing to charge"
    if not invoice.customer.stripe_payment_method:
        return "no saved payment method"
    if invoice.payments.filter(status=PaymentStatus.SUCCEEDED).exists():
        return "a payment succeeded: see its problem on Payments"
    return ""


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    """Read-only. ``problem``: a succeeded payment that could not mark its invoice paid
    (invoice voided meanwhile: refund due; another amount than the invoice's)."""

    list_display = [
        "invoice",
        "status",
        "problem",
        "amount",
        "currency",
        "stripe_payment_intent_id",
        "created_at",
    ]
    list_select_related = ["invoice"]
    list_filter = ["status", "problem"]
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

    change_list_template = "admin/billing/billingrun/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "bill/",
                self.admin_site.admin_view(self.bill_view),
                name="billing_billingrun_bill",
            )
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "may_bill": may_bill(request)}
        return super().changelist_view(request, extra)

    def bill_view(self, request: HttpRequest) -> HttpResponse:
        """Bill a period for all customers (the selected ones: Customers' action)."""
        if not may_bill(request):
            raise PermissionDenied
        return bill_period(self, request, [])

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
        charges = format_html_join(
            "",
            '<li><a href="{}">{}</a>: {}</li>',
            (
                (reverse("admin:billing_invoice_change", args=[f["invoice_id"]]), f["invoice"],
                 f["error"])
                for f in summary["failed_charges"]
            ),
        )  # fmt: skip
        return format_html(
            "<p>{} customers enqueued, {} invoiced, {} still waiting, {} failed</p>"
            "<ul>{}</ul><p>Failures:</p><ul>{}</ul>"
            "<p>Failed charges (invoices still unpaid; action <em>Charge again</em>):</p>"
            "<ul>{}</ul>",
            summary["customers"], summary["invoices"], summary["waiting"], len(summary["failed"]),
            totals, failures or "none", charges or "none",
        )  # fmt: skip
