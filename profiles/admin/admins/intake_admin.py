"""The intake log in admin: depth and lag per partition, and the calls set aside (poison)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Min, OuterRef, Subquery
from django.utils import timezone
from django.utils.html import format_html

from ... import selectors, services
from ...models import IntakeEvent
from ..display import pretty_json


class IntakePartitionAdmin(admin.ModelAdmin):
    """Read-only: how many calls wait in each partition of the intake log and for how long; while
    any wait, the table refreshes itself."""

    list_display = ["number", "depth", "lag", "stitched_at", "stitched_total"]
    ordering = ["number"]
    readonly_fields = ["number", "stitched_at", "stitched_total"]

    def get_queryset(self, request):
        waiting = IntakeEvent.objects.filter(partition=OuterRef("number")).values("partition")
        return (
            super()
            .get_queryset(request)
            .annotate(
                waiting=Subquery(waiting.annotate(n=Count("id")).values("n")[:1]),
                oldest=Subquery(waiting.annotate(t=Min("received_at")).values("t")[:1]),
            )
        )

    @admin.display(description="calls waiting")
    def depth(self, obj):
        # a partition with calls waiting marks its row as running work: the table then follows the
        # log by itself (cdp/static/cdp/admin.js reloads it every 5 s until every partition is empty)
        if not obj.waiting:
            return 0
        return format_html('<span data-cdp-running="1">{}</span>', obj.waiting)

    @admin.display(description="oldest waiting (s)")
    def lag(self, obj) -> str:
        return f"{(timezone.now() - obj.oldest).total_seconds():.1f}" if obj.oldest else "-"

    def changelist_view(self, request, extra_context=None):
        state = selectors.intake_state()
        messages.info(
            request,
            f"Intake log: {state['depth']} calls waiting, the oldest for {state['lag_seconds']:.1f} s; "
            f"{state['set_aside']} set aside.",
        )
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class IntakePoisonAdmin(admin.ModelAdmin):
    """Calls the stitch workers could not process, with their error; sent back to intake once fixed."""

    list_display = ["id", "source", "message_id", "short_error", "received_at", "set_aside_at"]
    list_select_related = ["source"]
    list_filter = ["source"]
    search_fields = ["=message_id"]
    ordering = ["-set_aside_at"]
    fields = ["id", "source", "message_id", "received_at", "set_aside_at", "error", "payload_pretty"]
    readonly_fields = fields
    actions = ["send_back"]

    @admin.display(description="error")
    def short_error(self, obj) -> str:
        return obj.error[:120]

    @admin.display(description="call as accepted")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Send the selected calls back to the intake log")
    def send_back(self, request, queryset):
        sent = services.intake_poison_send_back(poison_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{sent} call(s) sent back to the intake log.", messages.SUCCESS)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
