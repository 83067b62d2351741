"""Serve every provider fake on its fixed loopback port, for ``make run`` (see Procfile).

    python -m devstack.fakes            all fakes, until Ctrl-C / SIGTERM
    python -m devstack.fakes --print    only print their URLs

Ports: ``FAKE_<NAME>_PORT`` (``FAKE_STRIPE_PORT=12111`` ...). Callbacks go out only when
their URL is set: ``FAKE_STRIPE_WEBHOOK_URL`` (signed with ``FAKE_STRIPE_WEBHOOK_SECRET``),
``FAKE_TWILIO_AUTH_TOKEN`` (else each request's own token signs its callbacks; the
callback URL comes with each message), ``FAKE_SENDGRID_EVENT_WEBHOOK_URL``. The fakes
listen on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from devstack.fakes import airtable, osrm, restapi, sendgrid, stripe, twilio
from devstack.fakes.base import LOOPBACK, FakeProvider


def _port(name: str, default: int) -> int:
    variable = f"FAKE_{name.upper()}_PORT"
    raw = os.environ.get(variable, "")
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"taskyard: configuration error: {variable}={raw!r} is not a TCP port")
    return int(raw)


def ports() -> dict[str, int]:
    """The port of each fake, from the environment or the defaults."""
    defaults = {
        "stripe": stripe.DEFAULT_PORT,
        "twilio": twilio.DEFAULT_PORT,
        "sendgrid": sendgrid.DEFAULT_PORT,
        "airtable": airtable.DEFAULT_PORT,
        "osrm": osrm.DEFAULT_PORT,
        "restapi": restapi.DEFAULT_PORT,
    }
    return {name: _port(name, default) for name, default in defaults.items()}


def urls() -> dict[str, str]:
    """The base URL of each fake, as ``python -m devstack.fakes`` serves them."""
    return {name: f"http://{LOOPBACK}:{port}" for name, port in ports().items()}


def build() -> list[FakeProvider]:
    env = os.environ.get
    return [
        stripe.StripeFake(
            webhook_url=env("FAKE_STRIPE_WEBHOOK_URL") or None,
            webhook_secret=env("FAKE_STRIPE_WEBHOOK_SECRET") or stripe.DEV_WEBHOOK_SECRET,
        ),
        twilio.TwilioFake(auth_token=env("FAKE_TWILIO_AUTH_TOKEN") or None),
        sendgrid.SendGridFake(event_webhook_url=env("FAKE_SENDGRID_EVENT_WEBHOOK_URL") or None),
        # The data sync's incremental mode reads each record's last modification time.
        airtable.AirtableFake(last_modified_field="Last Modified"),
        osrm.OsrmFake(),
        restapi.RestApiFake(),
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--print"]:
        for name, url in urls().items():
            print(f"{name:9} {url}")
        return 0
    fakes = build()
    port_of = ports()
    started: list[FakeProvider] = []
    try:
        for fake in fakes:
            fake.log_requests = True
            try:
                fake.start(port_of[fake.name])
            except OSError as exc:
                sys.exit(
                    f"taskyard: fake {fake.name} cannot listen on port {port_of[fake.name]}: {exc}"
                )
            started.append(fake)
        print("Provider fakes (control: /_fake/faults, /_fake/requests; docs/fakes.md):")
        for fake in started:
            print(f"  {fake.name:9} {fake.url}")
        print(
            f"  sendgrid event webhook verification key: {sendgrid.DEV_VERIFICATION_KEY}",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
    finally:
        for fake in started:
            fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
