"""Many messages of one kind for the price of one ``send_task`` (bulk publishes).

Celery's ``send_task`` costs about half a millisecond of CPU per message (routing, the
task's execution options, the message headers, kombu's producer), which caps a bulk
enqueue far below what the database and Redis can take (issue 18). Jobs of one bulk share
everything but their id and arguments: the same task, queue, priority, options, parent
task and time. So the first message of each such group goes through ``send_task``
(into kombu's publish batch, nothing sent yet), and the others are copies of its Redis
payload with the id, the arguments and their reprs, and the delivery tag replaced. The
copies are the message Celery would have sent; tests/queueing/test_bulk_enqueue.py checks
them field by field against ``send_task``'s own.

Celery's ``before_task_publish`` and ``after_task_publish`` signals still fire for every
copy when something listens to them. ``task_sent`` events (CELERY_TASK_EVENTS) make every
message go through ``send_task``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps as kombu_dumps


def group_key(task_name: str, queue: str, priority: int | None, options: dict) -> tuple:
    """Messages with equal keys differ only by id and arguments."""
    encoded = json.dumps(options, sort_keys=True, default=str) if options else ""
    return (task_name, queue, priority, encoded)


def last_lpush(pipeline) -> tuple[str, dict]:
    """The list key and decoded payload of the LPUSH that kombu's publish batch just
    buffered in ``pipeline`` (redis-py keeps buffered commands in ``command_stack``)."""
    args, _options = pipeline.command_stack[-1]
    name, key, payload = args[0], args[1], args[2]
    if str(name).upper() != "LPUSH":
        raise RuntimeError(f"expected kombu to buffer an LPUSH, found {name!r}")
    key = key.decode() if isinstance(key, bytes) else key
    return key, json.loads(payload)


def copier(template: dict, app: Any) -> Callable[[str, list, dict], str]:
    """A function (job_id, args, kwargs) -> payload: ``template`` for another job."""
    amqp = app.amqp
    levels = app.conf.task_repr_maxlevels
    headers = template["headers"]
    properties = template["properties"]
    if properties.get("body_encoding") != "base64" or template.get("content-type") != (
        "application/json"
    ):
        raise RuntimeError("unexpected message encoding: copy only JSON in base64")
    _args, _kwargs, embed = json.loads(base64.b64decode(template["body"]))
    listening = bool(signals.before_task_publish.receivers or signals.after_task_publish.receivers)
    routing_key = properties["delivery_info"].get("routing_key")

    def copy(job_id: str, args: list, kwargs: dict) -> str:
        message_headers = {
            **headers,
            "id": job_id,
            "argsrepr": saferepr(args, amqp.argsrepr_maxsize, maxlevels=levels),
            "kwargsrepr": saferepr(kwargs, amqp.kwargsrepr_maxsize, maxlevels=levels),
        }
        message_properties = {
            **properties,
            "correlation_id": job_id,
            "delivery_tag": str(uuid.uuid4()),
        }
        body = (args, kwargs, embed)
        if listening:
            signals.before_task_publish.send(
                sender=headers["task"],
                body=body,
                exchange="",
                routing_key=routing_key,
                headers=message_headers,
                properties=message_properties,
                declare=[],
                retry_policy=None,
            )
        payload = {
            **template,
            "body": base64.b64encode(kombu_dumps(body).encode()).decode(),
            "headers": message_headers,
            "properties": message_properties,
        }
        if listening:
            signals.after_task_publish.send(
                sender=headers["task"], body=body, exchange="", routing_key=routing_key
            )
        return kombu_dumps(payload)

    return copy
