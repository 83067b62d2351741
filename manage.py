#!/usr/bin/env python
"""Django's command-line utility for Taskyard."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        # Importing `config` loads settings; a bad variable stops here with one line.
        import config  # noqa: F401
    except ImproperlyConfigured as exc:
        sys.exit(f"taskyard: configuration error: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
