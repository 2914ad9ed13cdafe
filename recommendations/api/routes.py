"""The recommendations app's part of /api/v1/ (collected by cdp/api/router.py)."""

from __future__ import annotations

from django.urls import URLPattern, path
from rest_framework.routers import DefaultRouter

from .views import ProductViewSet, RecommendationViewSet

# the catalog takes PUT/POST on the collection (bulk upsert), which the router does not map
urlpatterns: list[URLPattern] = [
    path(
        "products/",
        ProductViewSet.as_view({"get": "list", "post": "upsert", "put": "upsert"}),
        name="product-list",
    ),
    path("products/<str:sku>/", ProductViewSet.as_view({"get": "retrieve"}), name="product-detail"),
    path("products/<str:sku>/similar/", ProductViewSet.as_view({"get": "similar"}), name="product-similar"),
]


def register_serving(router: DefaultRouter) -> None:
    """Register the serving endpoint on the router whose patterns /api/v1/ tries first (cdp/api/router.py)."""
    router.register("recommendations", RecommendationViewSet, basename="recommendation")


def register(router: DefaultRouter) -> None:
    """Register this app's other viewsets on the shared /api/v1/ router."""
    from recommendations.experiments.api.views import BanditViewSet, ExperimentViewSet

    router.register("experiments", ExperimentViewSet, basename="experiment")
    router.register("bandits", BanditViewSet, basename="bandit")
