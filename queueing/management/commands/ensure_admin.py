"""Create the first superuser of a fresh install, once.

Idempotent: if any superuser exists, nothing happens. The password comes from
ADMIN_PASSWORD, or is generated and printed this one time (it is not stored anywhere).
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

# 18 random bytes → a 24-character URL-safe password.
GENERATED_PASSWORD_BYTES = 18


class Command(BaseCommand):
    help = "Create a superuser if none exists (password from ADMIN_PASSWORD or printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("ADMIN_USER", "admin"))
        parser.add_argument("--email", default=os.environ.get("ADMIN_EMAIL", ""))

    def handle(self, *args, username: str, email: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Admin user: already exists (unchanged).")
            return
        password = os.environ.get("ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Admin user created: {username} / {password}\n"
                    "  (shown only this once; change it with "
                    f"`.venv/bin/python manage.py changepassword {username}`)"
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Admin user created: {username} (password from ADMIN_PASSWORD)")
            )
