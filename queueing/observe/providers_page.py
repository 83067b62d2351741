"""The admin's Providers page: every declared provider's breaker, rate, errors, latency,
cost against budget and last health check (docs/providers.md), with a confirmed reset of
a provider's breaker and rate for operators."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from queueing.audit import record_request
from queueing.control.breaker import ProviderGuard
from queueing.control.providers import provider_status
from queueing.specs import provider_specs


@permission_required("queueing.view_queue_stats", raise_exception=True)
def providers_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Providers",
        "providers": [provider_status(spec) for spec in provider_specs().values()],
        "may_reset": request.user.has_perm("queueing.operate_queues"),
        "generated_at": timezone.now(),
    }
    return TemplateResponse(request, "admin/queueing/providers.html", context)


def provider_reset_view(request: HttpRequest, name: str) -> HttpResponse:
    """GET asks for confirmation; POST closes the breaker and restores the full rate."""
    spec = provider_specs().get(name)
    if spec is None:
        raise Http404(f"no provider {name!r}")
    if not request.user.has_perm("queueing.operate_queues"):
        raise PermissionDenied("resetting a provider needs the operate_queues permission")
    if request.method == "POST":
        before = provider_status(spec)
        ProviderGuard(spec).reset()
        record_request(
            request,
            "provider.reset",
            ("provider", name),
            before={"state": before["state"], "effective_rate": before["effective_rate"]},
            after={"state": "closed", "effective_rate": before["rate_limit"]},
            reason="via admin",
        )
        messages.success(request, f"Provider {name}: breaker closed, rate back to its ceiling.")
        return HttpResponseRedirect(reverse("queueing-providers"))
    context = {
        **admin.site.each_context(request),
        "title": f"Reset provider {name}?",
        "provider": provider_status(spec),
    }
    return TemplateResponse(request, "admin/queueing/provider_reset.html", context)
