"""Start Flower behind basic auth, configured from Django settings.

Flower gets its credentials through the FLOWER_BASIC_AUTH environment variable (never on
the command line, where `ps` would show them). Flower refuses to start without a password
unless DEBUG is on, in which case one is generated once into var/flower-password.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def flower_password() -> str:
    """The configured Flower password; in DEBUG, a generated one kept in var/."""
    if settings.FLOWER_PASSWORD:
        return settings.FLOWER_PASSWORD
    if not settings.DEBUG:
        raise CommandError("FLOWER_PASSWORD is required to start Flower when DEBUG is off")
    path = Path(settings.VAR_DIR) / "flower-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


class Command(BaseCommand):
    help = "Run Flower (the Celery monitor) behind basic auth from settings."

    def add_arguments(self, parser):
        parser.add_argument("--print-credentials", action="store_true")

    def handle(self, *args, print_credentials: bool, **options):
        password = flower_password()
        if print_credentials:
            self.stdout.write(f"{settings.FLOWER_USER}:{password}")
            return
        env = dict(os.environ)
        env["FLOWER_BASIC_AUTH"] = f"{settings.FLOWER_USER}:{password}"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "flower",
            f"--address={settings.FLOWER_ADDRESS}",
            f"--port={settings.FLOWER_PORT}",
        ]
        sys.stdout.flush()
        os.execve(sys.executable, argv, env)
