from django.contrib import admin, messages

from . import services
from .admin_readonly import ReadOnlyAdminMixin
from .models import ApiKey, JobLease


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "revoked_at"]
    fields = ["name", "prefix", "created_at", "revoked_at"]
    actions = ["revoke"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the row stays as a record of the key

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.api_key_create(name=obj.name)
        obj.pk = key.pk
        obj.__dict__.update(key.__dict__)
        messages.warning(request, f"Secret key {key.name} (copy it now, it is not shown again): {raw}")

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(key=key)
            count += 1
        messages.success(request, f"Revoked {count} key(s).")


@admin.register(JobLease)
class JobLeaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Leases of long runs (read-only): who runs what, the last heartbeat, attempts and their outcomes."""

    list_display = ["kind", "object_id", "state", "attempts", "worker", "heartbeat_at", "expires_at", "finished_at"]
    list_filter = ["kind", "state"]
    search_fields = ["=object_id"]
    ordering = ["-started_at"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in JobLease._meta.fields]
