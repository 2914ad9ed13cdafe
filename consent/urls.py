"""Site-level URLs of the consent app: /v1/consent (write key) and the customers' privacy center."""

from __future__ import annotations

from django.urls import path

from .api.consent import ConsentView
from .views.exports import export_download

urlpatterns = [
    path("v1/consent", ConsentView.as_view(), name="consent"),
    path("privacy/exports/<str:token>/", export_download, name="privacy-export-download"),
]
