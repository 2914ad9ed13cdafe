"""Inlines of the profiles admin."""

from __future__ import annotations

from django.contrib import admin

from cdp.admin_readonly import ReadOnlyAdminMixin

from ..models import Identifier


class IdentifierInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Identifier
    fields = ["kind", "value", "created_at", "last_seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("kind", "value")
