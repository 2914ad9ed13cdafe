"""The segments app's part of /api/v1/ (collected by cdp/api/router.py)."""

from __future__ import annotations

from django.urls import URLPattern, path
from rest_framework.routers import DefaultRouter

from segments.api.views import ProfileSegmentsView, SegmentViewSet
from segments.clustering.api import ClusteringRunViewSet, ClusterSegmentViewSet

# paths under /api/v1/ that are not viewsets on the router
urlpatterns: list[URLPattern] = [
    path("profiles/<str:profile_id>/segments/", ProfileSegmentsView.as_view(), name="profile-segments"),
]


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets on the shared /api/v1/ router."""
    router.register("segments", SegmentViewSet, basename="segment")
    # clustering (segments/clustering/api.py, owner CLUSTERING)
    router.register("clustering-runs", ClusteringRunViewSet, basename="clustering-run")
    router.register("cluster-segments", ClusterSegmentViewSet, basename="cluster-segment")
