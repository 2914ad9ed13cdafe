"""The consent app's part of /api/v1/ (collected by cdp/api/router.py)."""

from __future__ import annotations

from django.urls import URLPattern
from rest_framework.routers import DefaultRouter

from .consent import ProfileConsentViewSet
from .requests import PrivacyRequestViewSet

# paths under /api/v1/ that are not viewsets on the router
urlpatterns: list[URLPattern] = []


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets on the shared /api/v1/ router."""
    router.register(r"profiles/(?P<profile_id>[^/.]+)/consent", ProfileConsentViewSet, basename="profile-consent")
    router.register("privacy-requests", PrivacyRequestViewSet, basename="privacy-request")
