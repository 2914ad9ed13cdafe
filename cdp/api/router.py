"""The /api/v1/ surface: each app contributes its viewsets to one router.

Apps above profiles register through their own ``<app>/api/routes.py`` (``register(router)`` and
``urlpatterns``), so adding an endpoint never means editing this file.
"""

from rest_framework.routers import DefaultRouter

import consent.api.routes
import recommendations.api.routes
import segments.api.routes
from profiles.api.read import ProfileViewSet
from profiles.api.sources import SourceViewSet

from .views import ApiKeyViewSet

APP_ROUTES = (consent.api.routes, segments.api.routes, recommendations.api.routes)

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("sources", SourceViewSet, basename="source")
router.register("profiles", ProfileViewSet, basename="profile")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
for _routes in APP_ROUTES:
    _routes.register(router)

api_v1_urls = [*(p for r in APP_ROUTES for p in r.urlpatterns), *router.urls]
