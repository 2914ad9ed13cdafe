"""Site-level URLs of the consent app: /v1/consent (write key) and the customers' privacy center."""

from __future__ import annotations

from django.urls import path

from .api.consent import ConsentView
from .views import center
from .views.exports import export_download

urlpatterns = [
    path("v1/consent", ConsentView.as_view(), name="consent"),
    path("privacy/exports/<str:token>/", export_download, name="privacy-export-download"),
    path("privacy/", center.center_start, name="privacy-center"),
    path("privacy/verify/<str:token>/", center.center_verify, name="privacy-center-verify"),
    path("privacy/me/", center.center_me, name="privacy-center-me"),
    path("privacy/me/requests/", center.center_request, name="privacy-center-request"),
    path("privacy/logout/", center.center_logout, name="privacy-center-logout"),
]
