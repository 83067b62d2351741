"""GET /api/v1/queue/providers: the state of every declared provider (docs/providers.md)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.api.endpoints import ERRORS
from queueing.api.permissions import requires
from queueing.control.providers import provider_status
from queueing.specs import provider_specs


class ProvidersView(APIView):
    permission_classes = [requires("view_queue_stats")]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(
            {"providers": [provider_status(spec) for spec in provider_specs().values()]}
        )
