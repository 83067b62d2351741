"""Billing's tables: who is billed (Customer, ServiceContract), for what (ServiceEvent),
when (BillingPeriod, BillingRun), the documents (Invoice, InvoiceLine, CreditNote,
Document), tax (TaxRule), payments (Payment) and reminders (Reminder).

Amounts are Decimal with two places (cents) except unit prices (four places). Issued
invoices are never edited: a correction is a CreditNote. Design: docs/billing.md.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

# Decimal places: money 2 (cents), unit prices 4, quantities 3 (kg), tax rates 4
# (0.2100 = 21 %).


class Customer(models.Model):
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, default="")
    # For text messages (E.164); reminders and receipts go wherever the notifications
    # app can reach the customer (email, SMS...).
    phone = models.CharField(max_length=20, blank=True, default="", help_text="E.164")
    # The login that may see this customer's invoices over the API (role "customer").
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="billing_customers",
    )
    billing_address = models.TextField(blank=True, default="")
    region = models.CharField(max_length=20, help_text="Tax region, e.g. NL")
    currency = models.CharField(max_length=3, default="EUR")
    stripe_customer_id = models.CharField(max_length=64, blank=True, default="")
    # Stripe PaymentMethod charged off-session; empty: invoices are issued, not charged.
    stripe_payment_method = models.CharField(max_length=64, blank=True, default="")
    payment_terms_days = models.PositiveSmallIntegerField(default=14)
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Proration(models.TextChoices):
    DAILY = "daily", "By day (fee x active days / days in period)"
    FULL = "full", "Full month when active on any day"


class ServiceContract(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contracts")
    # How imports and drivers name the contract when its customer has several at once;
    # optional: a customer's only contract is found by the customer's code and the date.
    code = models.CharField(max_length=40, null=True, blank=True, unique=True)
    plan = models.CharField(max_length=100)
    container_size = models.CharField(max_length=20, help_text="e.g. 240L, 660L, 1100L")
    containers = models.PositiveSmallIntegerField(default=1)
    base_monthly_fee = models.DecimalField(max_digits=12, decimal_places=2)
    price_per_pickup = models.DecimalField(max_digits=12, decimal_places=4)
    price_extra_pickup = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("0"))
    price_overweight_per_kg = models.DecimalField(
        max_digits=12, decimal_places=4, default=Decimal("0")
    )
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True, help_text="Last day of service")
    proration = models.CharField(max_length=10, choices=Proration.choices, default=Proration.DAILY)

    class Meta:
        ordering = ["customer", "start_date"]

    def __str__(self) -> str:
        return f"{self.customer.code} {self.plan} ({self.container_size})"


class EventKind(models.TextChoices):
    PICKUP = "pickup", "Pickup"
    EXTRA_PICKUP = "extra_pickup", "Extra pickup"
    OVERWEIGHT = "overweight", "Overweight (kg)"


class EventSource(models.TextChoices):
    ROUTING = "routing", "Routing"
    DRIVER = "driver", "Driver"
    IMPORT = "import", "Import"
    MANUAL = "manual", "Manual"


class ServiceEvent(models.Model):
    contract = models.ForeignKey(ServiceContract, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    date = models.DateField()
    quantity = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("1"))
    source = models.CharField(max_length=10, choices=EventSource.choices)
    # The source's own id (a route stop, an import row): a re-import adds nothing.
    external_ref = models.CharField(max_length=100, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["date", "id"]
        indexes = [models.Index(fields=["contract", "date"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.date} x {self.quantity}"


class BillingPeriod(models.Model):
    """A calendar month in the business time zone; ``end`` is its last day."""

    label = models.CharField(max_length=7, unique=True, help_text="YYYY-MM")
    start = models.DateField()
    end = models.DateField()

    class Meta:
        ordering = ["-start"]

    def __str__(self) -> str:
        return self.label


class TaxRule(models.Model):
    region = models.CharField(max_length=20)
    name = models.CharField(max_length=100)
    rate = models.DecimalField(max_digits=6, decimal_places=4)
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["region", "-valid_from"]

    def __str__(self) -> str:
        return f"{self.region} {self.rate * 100:.2f}% from {self.valid_from}"


class BillingRun(models.Model):
    """One billing run: the jobs it enqueued, and (admin) what came of them. Started by
    the schedule, the API or the admin's "Bill a period" (permission ``add_billingrun``)."""

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="runs")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL)
    started_at = models.DateTimeField(auto_now_add=True)
    job_id = models.UUIDField(null=True, blank=True)
    customers_enqueued = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"run {self.id} of {self.period}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    PAID = "paid", "Paid"
    VOID = "void", "Void"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"


class NumberSequence(models.Model):
    """The last number handed out per series and year. Incremented in the transaction
    that creates the document, so a rollback gives the number back: no gaps."""

    series = models.CharField(max_length=10)  # "INV" or "CN"
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["series", "year"], name="billing_sequence_once")
        ]

    def __str__(self) -> str:
        return f"{self.series} {self.year}: {self.last_number}"


class Invoice(models.Model):
    number = models.CharField(max_length=20, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="invoices")
    run = models.ForeignKey(
        BillingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices"
    )
    status = models.CharField(
        max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.ISSUED
    )
    issue_date = models.DateField()
    due_date = models.DateField()
    currency = models.CharField(max_length=3)
    tax_region = models.CharField(max_length=20)
    subtotal = models.DecimalField(max_digits=12, decimal_places=2)
    tax_total = models.DecimalField(max_digits=12, decimal_places=2)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    billing_address = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issue_date", "-number"]
        constraints = [
            # One invoice per customer and period, whatever reruns or duplicate jobs do.
            models.UniqueConstraint(fields=["customer", "period"], name="billing_invoice_once")
        ]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20)  # "fee" or an EventKind
    description = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=12, decimal_places=3)
    unit_price = models.DecimalField(max_digits=12, decimal_places=4)
    net = models.DecimalField(max_digits=12, decimal_places=2)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=4)
    tax = models.DecimalField(max_digits=12, decimal_places=2)
    total = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["invoice", "position"]

    def __str__(self) -> str:
        return self.description


class CreditNote(models.Model):
    """A correction of an issued invoice (which itself is never edited): amounts are the
    negatives of what is credited."""

    number = models.CharField(max_length=20, unique=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    reason = models.CharField(max_length=200)
    issue_date = models.DateField()
    subtotal = models.DecimalField(max_digits=12, decimal_places=2)
    tax_total = models.DecimalField(max_digits=12, decimal_places=2)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issue_date", "-number"]

    def __str__(self) -> str:
        return self.number


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending (not sent to Stripe yet)"
    PROCESSING = "processing", "Sent, awaiting Stripe's webhook"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class PaymentProblem(models.TextChoices):
    """Why a succeeded payment needs a person: Stripe took money we cannot simply book."""

    NONE = "", "None"
    # The invoice was no longer issued (voided or credited meanwhile, or paid by another
    # payment) when this payment succeeded: the money is to be refunded at Stripe.
    REFUND_DUE = "refund_due", "Refund due (invoice not open when paid)"
    # Stripe received another amount than the invoice's: the invoice is not marked paid.
    AMOUNT_MISMATCH = "amount_mismatch", "Amount differs from the invoice"


class Payment(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    # Derived from the invoice number and the try: a retried job sends the same key, so
    # Stripe answers with the first PaymentIntent instead of charging again.
    idempotency_key = models.CharField(max_length=100, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(
        max_length=12, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    error = models.CharField(max_length=300, blank=True, default="")
    problem = models.CharField(
        max_length=20, choices=PaymentProblem.choices, blank=True, default=PaymentProblem.NONE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.invoice.number} {self.status}"


class DocumentKind(models.TextChoices):
    INVOICE = "invoice", "Invoice PDF"
    RECEIPT = "receipt", "Receipt PDF"


class Document(models.Model):
    """A rendered PDF, kept in the database so every web and worker process sees it."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="documents")
    kind = models.CharField(max_length=10, choices=DocumentKind.choices)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "kind"], name="billing_document_once")
        ]

    def __str__(self) -> str:
        return self.filename

    @property
    def filename(self) -> str:
        return f"{self.kind}-{self.invoice.number}.pdf"


class ReminderStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled (paid)"
    # Its time had passed when it was planned or ran (see reminders.py): not sent.
    SKIPPED = "skipped", "Skipped (too late)"


class Reminder(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="reminders")
    offset_days = models.SmallIntegerField(help_text="Days from the due date (-3 = before)")
    send_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=ReminderStatus.choices, default=ReminderStatus.SCHEDULED
    )
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["send_at"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "offset_days"], name="billing_reminder_once")
        ]

    def __str__(self) -> str:
        return f"{self.invoice} {self.offset_days:+d} days"
