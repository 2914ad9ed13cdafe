"""Events, read-only, with a date navigation drawn from the calendar (the table is the largest)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format

from cdp.admin_readonly import ReadOnlyAdminMixin

from ...models import Event, Profile, Source
from ...tracking.debugger import TTL_SECONDS, rejections_recent
from ..display import pretty_json, profile_link, properties_summary
from ..paginators import CappedCountPaginator


class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Events, read-only. The table is huge: no full counts, index-backed ordering, cheap date links.

    The default order is arrival (primary key, newest first); a list for one profile
    (``?profile=<id>``, linked from the profile page) is in occurred_at order via its index.
    """

    list_display = ["occurred_at", "type", "name", "profile_link", "source", "device_type", "summary", "received_at"]
    list_filter = ["type", "source"]
    list_select_related = ["source", "profile"]
    date_hierarchy = "occurred_at"
    sortable_by = ["occurred_at"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    fields = [
        "id",
        "type",
        "name",
        "profile",
        "source",
        "message_id",
        "user_id",
        "anonymous_id",
        "occurred_at",
        "original_timestamp",
        "sent_at",
        "received_at",
        "device_type",
        "local_hour",
        "properties_pretty",
        "traits_pretty",
        "context_pretty",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "profiles_event_changelist":
            queryset = queryset.select_related("source", "profile").only(
                "id",
                "occurred_at",
                "received_at",
                "type",
                "name",
                "device_type",
                "properties",
                "source__name",
                "profile__traits",
                "profile__merged_into",
            )
        return queryset

    def get_ordering(self, request):
        return ["-occurred_at"] if request.GET.get("profile") else ["-id"]

    @admin.display(description="profile")
    def profile_link(self, obj: Event):
        return profile_link(obj.profile)

    @admin.display(description="properties")
    def summary(self, obj: Event) -> str:
        return properties_summary(obj.properties, limit=80)

    @admin.display(description="properties")
    def properties_pretty(self, obj: Event):
        return pretty_json(obj.properties)

    @admin.display(description="traits")
    def traits_pretty(self, obj: Event):
        return pretty_json(obj.traits)

    @admin.display(description="context")
    def context_pretty(self, obj: Event):
        return pretty_json(obj.context)

    # --- the live stream (debugger) -----------------------------------------------------------

    live_limit = 50

    def get_urls(self):
        return [
            path("live/", self.admin_site.admin_view(self.live_view), name="profiles_event_live"),
            *super().get_urls(),
        ]

    def live_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        sources = list(Source.objects.order_by("name"))
        chosen = request.GET.get("source")
        source = next((s for s in sources if str(s.pk) == chosen), None) or (sources[0] if sources else None)
        events, rejected = [], []
        if source is not None:
            latest = (
                Event.objects.filter(source=source)
                .select_related("profile")
                .only("id", "received_at", "type", "name", "properties", "profile__traits", "profile__merged_into")
                .order_by("-id")[: self.live_limit]
            )
            events = [
                {
                    "event": e,
                    "url": reverse("admin:profiles_event_change", args=[e.pk]),
                    "profile": e.profile,
                    "profile_url": reverse("admin:profiles_profile_change", args=[e.profile_id]),
                    "summary": properties_summary(e.properties, limit=100),
                }
                for e in latest
            ]
            for r in rejections_recent(source_id=source.pk, limit=self.live_limit):
                call = r.get("call") or {}
                rejected.append(
                    {
                        "at": datetime.fromtimestamp(r["at"], tz=timezone.get_current_timezone()),
                        "call_text": " · ".join(f"{k}: {v}" for k, v in call.items()) or "—",
                        "errors": r.get("errors") or {},
                    }
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Live events{f' of {source.name}' if source else ''}",
            "opts": self.opts,
            "sources": sources,
            "source": source,
            "events": events,
            "rejected": rejected,
            "limit": self.live_limit,
            "now": timezone.now(),
            "refresh_seconds": 3,
            "kept_hours": TTL_SECONDS // 3600,
        }
        return TemplateResponse(request, "admin/profiles/event/live.html", context)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and context.get("cl") is not None:
            context["event_date_nav"] = calendar_date_nav(context["cl"])
        return response


def time_bounds() -> tuple[datetime, datetime] | None:
    """Earliest and latest event time, from the indexed profile seen-times (events set them)."""
    bounds = Profile.objects.aggregate(first=Min("first_seen_at"), last=Max("last_seen_at"))
    if bounds["first"] is None or bounds["last"] is None:
        return None
    return timezone.localtime(bounds["first"]), timezone.localtime(bounds["last"])


def calendar_date_nav(cl) -> dict:
    """The date_hierarchy links drawn from the calendar, not from ``SELECT DISTINCT`` over events.

    Same links and filters as Django's date hierarchy (``occurred_at__year`` …). Only years, months
    and days that have events (under the list's current filters) are offered: each candidate (at
    most 31) is one ``EXISTS`` over a time range, which the BRIN index on ``occurred_at`` answers.
    """
    field = cl.date_hierarchy
    names = [f"{field}__{part}" for part in ("year", "month", "day")]
    try:
        year, month, day = (int(cl.params[n]) if cl.params.get(n) else None for n in names)
    except ValueError:
        return {"show": False}
    bounds = None
    if year is None:
        bounds = time_bounds()
        if bounds is None:
            return {"show": False}
        if bounds[0].year == bounds[1].year:
            year = bounds[0].year
            if bounds[0].month == bounds[1].month:
                month = bounds[0].month

    def link(filters: dict) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    def has_events(start: datetime, end: datetime) -> bool:
        tz = timezone.get_current_timezone()
        lower, upper = timezone.make_aware(start, tz), timezone.make_aware(end, tz)
        return cl.queryset.filter(**{f"{field}__gte": lower, f"{field}__lt": upper}).exists()

    def next_month(y: int, m: int) -> datetime:
        return datetime(y + 1, 1, 1) if m == 12 else datetime(y, m + 1, 1)

    if year and month and day:
        try:
            chosen = datetime(year, month, day)
        except ValueError:
            return {"show": False}
        return {
            "show": True,
            "back": {
                "link": link({names[0]: year, names[1]: month}),
                "title": date_format(chosen, "YEAR_MONTH_FORMAT"),
            },
            "choices": [{"title": date_format(chosen, "MONTH_DAY_FORMAT")}],
        }
    if year and month:
        if not 1 <= month <= 12:
            return {"show": False}
        days = range(1, calendar.monthrange(year, month)[1] + 1)
        return {
            "show": True,
            "back": {"link": link({names[0]: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({names[0]: year, names[1]: month, names[2]: d}),
                    "title": date_format(datetime(year, month, d), "MONTH_DAY_FORMAT"),
                }
                for d in days
                if has_events(datetime(year, month, d), datetime(year, month, d) + timedelta(days=1))
            ],
        }
    if year:
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {
                    "link": link({names[0]: year, names[1]: m}),
                    "title": date_format(datetime(year, m, 1), "YEAR_MONTH_FORMAT"),
                }
                for m in range(1, 13)
                if has_events(datetime(year, m, 1), next_month(year, m))
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({names[0]: y}), "title": str(y)}
            for y in range(bounds[0].year, bounds[1].year + 1)
            if has_events(datetime(y, 1, 1), datetime(y + 1, 1, 1))
        ],
    }
