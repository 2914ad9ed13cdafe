"""Admin pages of records that only cdp writes (ledgers, audit trails, logs, model versions): people
look at them, never add, change or delete them by hand."""


class ReadOnlyAdminMixin:
    """First base of a ``ModelAdmin`` or an inline whose rows are written by the system only. Actions
    a page offers (unmerge, revoke, retry) are its own permissions, not these three."""

    def has_add_permission(self, request, obj=None) -> bool:  # ``obj`` is passed to inlines only
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
