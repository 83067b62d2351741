"""Local HTTP fakes of the third-party providers, for development and tests.

Each fake is a small HTTP server on 127.0.0.1 that answers the part of a provider's API
the project uses, in the provider's own shapes, so the real SDKs run over real HTTP
without accounts (issue 12, "Local provider fakes"; guide: docs/fakes.md):

- ``devstack.fakes.stripe``    customers, payment intents, idempotency keys, signed events
- ``devstack.fakes.twilio``    messages and signed status callbacks
- ``devstack.fakes.sendgrid``  v3 mail send and the signed event webhook
- ``devstack.fakes.airtable``  list/create/update records, pagination, 5 requests/s per base
- ``devstack.fakes.osrm``      the road-network matrix (OSRM ``/table``)
- ``devstack.fakes.restapi``   a generic REST JSON records API (cursor/page, change feed)
- ``devstack.fakes.webhooks``  a receiver that records the callbacks, for tests

In a test: ``with devstack.fakes.stripe.serve() as fake:`` (any free port), then
``fake.url``, ``fake.fail_next(429, retry_after=1)``, ``fake.requests``. For ``make run``:
``python -m devstack.fakes`` serves them all on fixed loopback ports. The shared
machinery (faults, record, control endpoints under ``/_fake/``) is in ``base.py``.
"""

from __future__ import annotations

from devstack.fakes.base import FakeProvider, Fault, Request, Response

__all__ = ["FakeProvider", "Fault", "Request", "Response"]
