"""Customers, contracts, service events, invoices, tax, PDFs and payments."""
