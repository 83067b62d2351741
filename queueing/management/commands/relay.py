"""Run the relay and reaper loop (queueing/relay/loop.py) until stopped."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from queueing.relay.loop import Relay


class Command(BaseCommand):
    help = "Publish due and unpublished jobs, requeue expired leases, recover lost messages."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run one tick and print it")

    def handle(self, *args, once: bool, **options):
        relay = Relay()
        if once:
            self.stdout.write(str(relay.tick()))
            return
        # SIGTERM (honcho, systemd, Kubernetes) ends the loop like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            relay.run_forever()
        except KeyboardInterrupt:
            self.stdout.write("relay stopped")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
