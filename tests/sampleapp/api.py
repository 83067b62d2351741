"""The sample app's endpoint, mounted under /api/v1/queue/ by the platform."""

from django.urls import path

from queueing import JobEndpoint

urlpatterns = [
    path(
        "sample/collections",
        JobEndpoint.as_view(task="sampleapp.plan_collection"),
        name="sample-collections",
    ),
]
