"""The schema registry in admin (like PostHog's event and property definitions): read-only."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from cdp.admin_readonly import ReadOnlyAdminMixin

from ...models import SchemaItem
from ..display import display_value


class SchemaItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "event", "count", "sample_values", "first_seen_at", "last_seen", "stale"]
    list_filter = ["kind"]
    search_fields = ["name", "event"]
    ordering = ["kind", "event", "-count", "name"]
    readonly_fields = ["kind", "event", "name", "count", "samples", "first_seen_at", "last_seen_at"]
    show_full_result_count = False

    # read only: written by ingestion and the rebuild only

    @admin.display(description="sample values")
    def sample_values(self, obj: SchemaItem) -> str:
        return display_value(obj.samples)

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, obj: SchemaItem) -> str:
        return f"{timezone.localtime(obj.last_seen_at):%Y-%m-%d %H:%M}"

    @admin.display(description="not seen for 30 days", boolean=True)
    def stale(self, obj: SchemaItem) -> bool:
        return (timezone.now() - obj.last_seen_at).days >= 30
