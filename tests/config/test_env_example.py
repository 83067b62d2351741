""".env.example documents every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = re.compile(
    r"""(?:env_\w+|os\.environ\.get|os\.environ\.setdefault)\(\s*["']([A-Z_]+)["']"""
)
# Set by tooling, not by an operator.
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE", "PATH"}


def variables_read() -> set[str]:
    sources = [*ROOT.glob("config/*.py"), *ROOT.glob("*/management/commands/*.py")]
    sources += [*ROOT.glob("devstack/*.py")]
    names: set[str] = set()
    for path in sources:
        names |= set(READERS.findall(path.read_text()))
    return names - NOT_CONFIGURATION


def test_every_variable_is_in_env_example():
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    read = variables_read()
    assert read, "found no variables: the pattern is broken"
    assert read - documented == set()
