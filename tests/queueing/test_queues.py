"""Queue declarations: validated at start, and the source of the worker command lines."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from queueing.specs import parse_queues, worker_commands


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({}, "at least one queue"),
        ({"billing": {}}, "concurrency must be a positive integer"),
        ({"billing": {"concurrency": 0}}, "concurrency must be a positive integer"),
        ({"billing": {"concurrency": "2"}}, "concurrency must be a positive integer"),
        ({"billing": {"concurrency": 1, "priority": 12}}, "priority must be an integer 0-9"),
        ({"billing": {"concurrency": 1, "pool": "gevent"}}, "pool 'gevent'"),
        ({"billing": {"concurrency": 1, "rate": "fast"}}, "unknown field(s) ['rate']"),
        ({"billing": {"concurrency": 1, "retry": {"tries": 3}}}, "retry takes only"),
        ({"billing": {"concurrency": 1, "retry": {"max_attempts": -1}}}, ">= 0"),
        ({"bad name!": {"concurrency": 1}}, "letters, digits and dashes"),
        (
            {
                "a": {"concurrency": 1, "group": "g"},
                "b": {"concurrency": 1, "group": "g", "pool": "threads"},
            },
            "mixes pools",
        ),
    ],
)
def test_bad_declarations_name_the_queue_and_field(declaration, message):
    with pytest.raises(ImproperlyConfigured, match="TASKYARD_QUEUES") as error:
        parse_queues(declaration)
    assert message in str(error.value)


def test_worker_commands_group_queues_and_sum_concurrency():
    specs = parse_queues(
        {
            "billing": {"concurrency": 1},
            "notifications": {"concurrency": 10, "pool": "threads", "group": "io"},
            "external-api": {"concurrency": 8, "pool": "threads", "group": "io"},
        }
    )
    assert worker_commands(specs) == [
        "celery -A config worker --queues=billing --concurrency=1 --pool=prefork "
        "--hostname=billing@%h --loglevel=INFO",
        "celery -A config worker --queues=notifications,external-api --concurrency=18 "
        "--pool=threads --hostname=io@%h --loglevel=INFO",
    ]


def test_workers_print_covers_every_declared_queue(capsys, settings):
    call_command("workers", "--print")
    out = capsys.readouterr().out
    consumed = {
        queue
        for line in out.splitlines()
        if line.startswith("celery")
        for queue in line.split("--queues=")[1].split()[0].split(",")
    }
    assert consumed == set(settings.TASKYARD_QUEUES)
