from django.urls import path

from queueing import views

app_name = "queueing"

urlpatterns = [
    path("demo/", views.demo, name="demo"),
    path("demo/<str:task_id>/", views.demo_status, name="demo-status"),
]
