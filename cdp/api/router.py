"""The /api/v1/ surface: each app contributes its viewsets to one router."""

from rest_framework.routers import DefaultRouter

from profiles.api.read import ProfileViewSet
from profiles.api.sources import SourceViewSet

from .views import ApiKeyViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("sources", SourceViewSet, basename="source")
router.register("profiles", ProfileViewSet, basename="profile")
router.register("api-keys", ApiKeyViewSet, basename="api-key")

api_v1_urls = router.urls
