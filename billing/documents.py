"""Invoice and receipt PDFs: rendered in pure Python (fpdf2, core fonts, no system
packages), stored in the database (Document) so every process can serve them.

Rendering runs as ``billing.render_document`` jobs, limited as the seed says: 20 a
minute (the ``billing-pdf`` rate limit) and 3 at a time (its concurrency key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.conf import settings
from fpdf import FPDF

from billing.models import Document, DocumentKind, Invoice
from queueing import Job, enqueue

TITLES = {DocumentKind.INVOICE: "Invoice", DocumentKind.RECEIPT: "Receipt"}


def _latin1(text: object) -> str:
    # The PDF core fonts cover Latin-1 only; anything else prints as "?" rather than
    # failing the job (an embedded TTF would need a font file shipped with the app).
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _row(pdf: FPDF, cells: Iterable[tuple[float, object, str]], bold: bool = False) -> None:
    pdf.set_font("helvetica", "B" if bold else "", 9)
    for width, text, align in cells:
        pdf.cell(width, 6, _latin1(text), border=0, align=align)
    pdf.ln(6)


def render(invoice: Invoice, kind: str) -> bytes:
    """The PDF of ``invoice`` (kind "invoice") or of its payment receipt ("receipt")."""
    customer = invoice.customer
    pdf = FPDF(format="A4")
    pdf.set_creator(settings.BILLING_COMPANY_NAME)
    pdf.set_title(f"{TITLES[DocumentKind(kind)]} {invoice.number}")
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(
        0,
        10,
        _latin1(f"{TITLES[DocumentKind(kind)]} {invoice.number}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_font("helvetica", "", 10)
    header = [
        settings.BILLING_COMPANY_NAME,
        "",
        f"Customer: {customer.name} ({customer.code})",
        *invoice.billing_address.splitlines(),
        "",
        f"Period: {invoice.period.start} to {invoice.period.end}",
        f"Issued: {invoice.issue_date}    Due: {invoice.due_date}",
    ]
    if kind == DocumentKind.RECEIPT and invoice.paid_at:
        header.append(f"Paid: {invoice.paid_at:%Y-%m-%d}")
    for text in header:
        pdf.cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (80, 18, 24, 22, 22, 24)
    _row(
        pdf,
        zip(
            widths,
            ("Description", "Qty", "Unit price", "Net", "Tax", "Total"),
            "LRRRRR",
            strict=True,
        ),
        bold=True,
    )
    for line in invoice.lines.all():
        _row(
            pdf,
            zip(
                widths,
                (
                    line.description,
                    line.quantity.normalize(),
                    line.unit_price.quantize(line.net),
                    line.net,
                    line.tax,
                    line.total,
                ),
                "LRRRRR",
                strict=True,
            ),
        )
    pdf.ln(2)
    rate = invoice.lines.values_list("tax_rate", flat=True).first()
    summary = [
        ("Subtotal", invoice.subtotal),
        (
            f"Tax {invoice.tax_region} {rate * 100 if rate is not None else 0:.2f} %",
            invoice.tax_total,
        ),
        (f"Total {invoice.currency}", invoice.total),
    ]
    for label, amount in summary:
        _row(pdf, [(sum(widths[:-1]), label, "R"), (widths[-1], amount, "R")], bold=True)
    if kind == DocumentKind.RECEIPT:
        pdf.ln(4)
        pdf.cell(0, 6, _latin1(f"Received with thanks: {invoice.total} {invoice.currency}."))
    return bytes(pdf.output())


def store(invoice: Invoice, kind: str) -> Document:
    """Render and keep the document (once: an existing one is returned as it is)."""
    existing = Document.objects.filter(invoice=invoice, kind=kind).first()
    if existing is not None:
        return existing
    content = render(invoice, kind)
    Document.objects.bulk_create(
        [
            Document(
                invoice=invoice,
                kind=kind,
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
            )
        ],
        ignore_conflicts=True,
    )
    return Document.objects.get(invoice=invoice, kind=kind)


def request(invoice_id: int, kind: str) -> Job:
    """Enqueue the rendering (one active job per document), in the caller's transaction."""
    return enqueue("billing.render_document", kwargs={"invoice_id": invoice_id, "kind": kind})
