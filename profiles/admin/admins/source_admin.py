"""Sources and their write keys (shown once, on creation and rotation)."""

from __future__ import annotations

from django.contrib import admin, messages

from ... import services


class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "write_key_prefix", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["write_key_prefix", "created_at"]
    fields = ["name", "is_active", "write_key_prefix", "created_at"]
    actions = ["rotate_write_key"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        source, raw = services.source_create(name=obj.name)
        obj.pk = source.pk
        obj.__dict__.update(source.__dict__)
        messages.warning(request, f"Write key for {source.name} (copy it now, it is not shown again): {raw}")

    @admin.action(description="Rotate the write key of the selected sources")
    def rotate_write_key(self, request, queryset):
        count = 0
        for source in queryset:
            _, raw = services.source_rotate_write_key(source=source)
            messages.warning(request, f"New write key for {source.name} (shown once): {raw}")
            count += 1
        messages.success(request, f"Rotated {count} write key(s).")
