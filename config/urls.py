"""URL routes of Taskyard."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from queueing.api.auth import LoginView, RefreshView
from queueing.api.errors import api_not_found
from queueing.observe import views as monitoring_views
from queueing.observe.dashboard import dashboard_view
from queueing.observe.providers_page import provider_reset_view, providers_view
from queueing.observe.report_page import report_view, reports_view

admin.site.site_header = "Taskyard"
admin.site.site_title = "Taskyard"
admin.site.index_title = "Operations"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path(
        "admin/queueing/dashboard/",
        admin.site.admin_view(dashboard_view),
        name="queueing-dashboard",
    ),
    path(
        "admin/queueing/providers/",
        admin.site.admin_view(providers_view),
        name="queueing-providers",
    ),
    path(
        "admin/queueing/providers/<slug:name>/reset/",
        admin.site.admin_view(provider_reset_view),
        name="queueing-provider-reset",
    ),
    path("admin/queueing/reports/", admin.site.admin_view(reports_view), name="queueing-reports"),
    path(
        "admin/queueing/reports/<str:day>/",
        admin.site.admin_view(report_view),
        name="queueing-report",
    ),
    path("admin/", admin.site.urls),
    path("queueing/", include("queueing.urls")),
    path("health/live", monitoring_views.live, name="health-live"),
    path("health/ready", monitoring_views.ready, name="health-ready"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("api/v1/queue/", include("queueing.api.urls")),
    path("", include("datasync.urls")),
    path("api/token/", LoginView.as_view(), name="token-obtain"),
    path("api/token/refresh/", RefreshView.as_view(), name="token-refresh"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Anything else under /api/ answers in the API's error shape.
    re_path(r"^api/", api_not_found),
]
