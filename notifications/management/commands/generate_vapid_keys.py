"""Generate the VAPID key pair Web Push needs (docs/notifications.md, "Web Push").

    manage.py generate_vapid_keys            print VAPID_PRIVATE_KEY / VAPID_PUBLIC_KEY
    manage.py generate_vapid_keys --write    also write the private key to VAPID_KEY_FILE
                                             (development: read when the variable is unset)

The public key is the ``applicationServerKey`` browsers subscribe with; a new pair
invalidates every existing subscription, so --write refuses to replace a key file.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def generate() -> tuple[str, str]:
    """(private key, public key), base64url as py_vapid and browsers expect them."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = _b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    public = _b64url(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    return private, public


class Command(BaseCommand):
    help = "Generate a VAPID key pair for Web Push."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--write", action="store_true", help="write the private key to VAPID_KEY_FILE"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        private, public = generate()
        if options["write"]:
            path = Path(settings.VAPID_KEY_FILE)
            if path.exists():
                raise CommandError(
                    f"{path} exists; subscriptions depend on it. Delete it first to replace it."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(private + "\n")
            path.chmod(0o600)
            self.stderr.write(f"private key written to {path}")
        self.stdout.write(f"VAPID_PRIVATE_KEY={private}")
        self.stdout.write(f"VAPID_PUBLIC_KEY={public}")
