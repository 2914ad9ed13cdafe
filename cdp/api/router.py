"""The /api/v1/ surface: each app contributes its viewsets to one router.

Apps above profiles register through their own ``<app>/api/routes.py`` (``register(router)`` and
``urlpatterns``), so adding an endpoint never means editing this file.

Django tries a request's path against the patterns in order, so the busiest endpoints come first:
``GET /api/v1/recommendations/`` (its own router), then the catalog (``products/…``, the recommendations
app's ``urlpatterns``). Behind the 44 patterns before it, resolving the serving endpoint cost about
90 µs a request (decision 0059). No two patterns here match the same path, so the order changes
nothing else.
"""

from rest_framework.routers import DefaultRouter

import consent.api.routes
import recommendations.api.routes
import segments.api.routes
from profiles.api.read import ProfileViewSet
from profiles.api.sources import SourceViewSet

from .views import ApiKeyViewSet

APP_ROUTES = (recommendations.api.routes, consent.api.routes, segments.api.routes)

serving_router = DefaultRouter(trailing_slash=True)
serving_router.include_root_view = False
recommendations.api.routes.register_serving(serving_router)

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("sources", SourceViewSet, basename="source")
router.register("profiles", ProfileViewSet, basename="profile")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
for _routes in APP_ROUTES:
    _routes.register(router)

api_v1_urls = [*serving_router.urls, *(p for r in APP_ROUTES for p in r.urlpatterns), *router.urls]
