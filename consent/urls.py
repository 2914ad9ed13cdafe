"""Site-level URLs of the consent app: /v1/consent (write key) and the customers' privacy center."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
