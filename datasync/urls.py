"""Inbound webhooks, mounted at the site root by config/urls.py: /webhooks/<source>/
(and /webhook/<source>, the seed design's spelling), with or without the final slash."""

from django.urls import re_path

from datasync import views

app_name = "webhooks"

urlpatterns = [re_path(r"^webhooks?/(?P<source>[-\w]+)/?$", views.webhook, name="receive")]
