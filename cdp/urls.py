from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from profiles.api.sdk_settings import RudderStackSourceConfigView, SegmentSettingsView
from profiles.api.tracking import beacon_urls, tracking_urls
from recommendations.api.storefront import StorefrontRecommendationView
from recommendations.experiments.api.storefront import StorefrontAssignmentView

from . import health, sdk_assets
from .api.router import api_v1_urls

admin.site.site_header = "cdp administration"
admin.site.site_title = "cdp"
admin.site.index_title = "Customer data platform"
admin.site.site_url = "/privacy/"  # "View site": the one public page cdp serves (the privacy center)

urlpatterns = [
    # the tracking calls first: the busiest paths, tried before every other pattern (decision 0053); their
    # names (batch, track, t, …) are exact, so /v1/consent, /v1/recommendations and the rest still reach theirs
    path("v1/", include((tracking_urls, "tracking"), namespace="tracking")),
    path("beacon/v1/", include((beacon_urls, "beacon"), namespace="beacon")),
    # then the read API, whose serving endpoint is the busiest of it (decision 0059); no pattern below
    # matches a path under api/v1/
    path("api/v1/", include((api_v1_urls, "api"), namespace="v1")),
    path("", RedirectView.as_view(url="/admin/", permanent=False), name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # staff only (docs/architecture.md); Swagger UI's files come from drf-spectacular-sidecar, pinned
    path("api/docs/", staff_member_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("", include("consent.urls")),  # /v1/consent and the privacy center (before the tracking catch)
    # the storefront SDKs' settings documents (docs/storefront.md)
    path("v1/projects/<str:write_key>/settings", SegmentSettingsView.as_view(), name="segment-settings"),
    re_path(r"^sourceConfig/?$", RudderStackSourceConfigView.as_view(), name="rudderstack-source-config"),
    path("v1/recommendations", StorefrontRecommendationView.as_view(), name="storefront-recommendations"),
    path("v1/experiments/assignment", StorefrontAssignmentView.as_view(), name="storefront-experiment-assignment"),
    path("analytics.js/v1/<str:write_key>/analytics.min.js", sdk_assets.analytics_js_snippet_bundle),
    path("analytics-next/bundles/<str:name>", sdk_assets.analytics_js_chunk),
]

handler400 = "cdp.api.errors.handler400"
handler403 = "cdp.api.errors.handler403"
handler404 = "cdp.api.errors.handler404"
handler500 = "cdp.api.errors.handler500"
