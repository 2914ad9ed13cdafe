"""Site-level URLs of the consent app: /v1/consent (write key) and the customers' privacy center."""

from __future__ import annotations

from django.urls import path

from .api.consent import ConsentView

urlpatterns = [
    path("v1/consent", ConsentView.as_view(), name="consent"),
]
