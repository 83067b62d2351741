"""Probes and Prometheus: ``/health/live``, ``/health/ready``, ``/metrics``."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from queueing.observe.health import readiness
from queueing.observe.metrics import TaskyardCollector

_registry = CollectorRegistry(auto_describe=False)
_registry.register(TaskyardCollector())


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The web process is up and answering (no dependency checked)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, else 503. Anonymous probes get each check's ok/fail
    only; staff and the metrics token get the details (queue names, worker counts,
    heartbeat ages, errors), which say too much about the deployment to be public."""
    ok, checks = readiness()
    body: dict[str, object] = {"status": "ok" if ok else "fail"}
    if _may_scrape(request):
        body["checks"] = checks
    else:
        body["checks"] = {name: "ok" if check["ok"] else "fail" for name, check in checks.items()}
    return JsonResponse(body, status=200 if ok else 503)


def _may_scrape(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    return bool(request.user.is_authenticated and request.user.is_staff)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; needs ``Authorization: Bearer $METRICS_TOKEN`` or a staff
    login (queue names, task names and volumes are not for the public)."""
    if not _may_scrape(request):
        response = HttpResponse(
            "metrics need a bearer token or a staff login\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="taskyard-metrics"'
        return response
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
