"""Profile search and the profile page; the one write is undoing a merge (profiles.services.profile_unmerge)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from cdp.admin_readonly import ReadOnlyAdminMixin

from ... import services
from ...identity.trait_policy import trait_value
from ...models import Identifier, Merge, MergeStatus, Profile
from ..display import (
    COMPUTED_ORDER,
    EMPTY,
    can_unmerge,
    display_name,
    display_value,
    figure,
    profile_url,
    properties_summary,
    short_id,
    value_rows,
)
from ..filters import ProfileStatusFilter
from ..inlines import IdentifierInline
from ..paginators import CappedCountPaginator
from ..panels import profile_panels, profile_panels_html
from ..search import profile_search_q

TIMELINE_LENGTH = 50
MERGE_HISTORY_LENGTH = 100


class ProfileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Profiles are read-only here (ingestion and identity resolution write them); merges can be undone."""

    list_display = [
        "short_id",
        "name",
        "email",
        "identifier_count",
        "first_seen_at",
        "last_seen_at",
        "orders",
        "revenue",
        "engagement",
        "status",
    ]
    list_display_links = ["short_id"]
    list_filter = [ProfileStatusFilter]
    search_fields = ["=identifiers__value"]  # shows the search box; get_search_results does the work
    search_help_text = (
        "A name or part of it (at least 3 letters), an email, phone, user id, anonymous id or other identifier "
        "(any spelling; kind:value narrows to one kind), or a profile id or its first characters."
    )
    ordering = ["-last_seen_at"]
    sortable_by = ["first_seen_at", "last_seen_at"]  # indexed; sorting millions by a computed figure is not
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    inlines = [IdentifierInline]
    readonly_fields = [
        "id",
        "status",
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "traits_table",
        "computed_table",
        "computed_at",
    ]
    fieldsets = [
        (None, {"fields": ["id", "status", ("first_seen_at", "last_seen_at"), ("created_at", "updated_at")]}),
        ("Traits", {"fields": ["traits_table"]}),
        ("Computed traits", {"fields": ["computed_table", "computed_at"]}),
    ]

    # the list loads what it shows: the identifier count and computed figures come from the database
    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "profiles_profile_changelist":
            identifiers = (
                Identifier.objects.filter(profile=OuterRef("pk")).order_by().values("profile").annotate(n=Count("*"))
            )
            queryset = queryset.annotate(
                identifier_count=Coalesce(Subquery(identifiers.values("n"), output_field=IntegerField()), 0),
                orders=KeyTransform("orders", "computed"),
                revenue=KeyTransform("revenue", "computed"),
                engagement=KeyTransform("engagement_score", "computed"),
            ).only("id", "traits", "first_seen_at", "last_seen_at", "merged_into")
        return queryset

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(profile_search_q(search_term)), False

    # read only: data is not edited by hand; erasure is a data-subject request (consent), not a row delete

    def has_unmerge_permission(self, request) -> bool:
        return can_unmerge(request.user)

    # --- list columns ---

    @admin.display(description="id")
    def short_id(self, obj: Profile) -> str:
        return short_id(obj.pk)

    @admin.display(description="name")
    def name(self, obj: Profile) -> str:
        return display_name(obj.traits) or EMPTY

    @admin.display(description="email")
    def email(self, obj: Profile) -> str:
        value = trait_value(obj.traits, "email")
        return value if isinstance(value, str) and value else EMPTY

    @admin.display(description="identifiers")
    def identifier_count(self, obj: Profile):
        return obj.identifier_count

    @admin.display(description="orders")
    def orders(self, obj: Profile):
        return figure(obj.orders, "{:,}")

    @admin.display(description="revenue")
    def revenue(self, obj: Profile):
        return figure(obj.revenue, "{:,.2f}")

    @admin.display(description="engagement")
    def engagement(self, obj: Profile):
        return figure(obj.engagement, "{:.1f}")

    @admin.display(description="status")
    def status(self, obj: Profile):
        if not obj.merged_into_id:
            return "live"
        return format_html(
            'merged into <a href="{}">{}</a>', profile_url(obj.merged_into_id), short_id(obj.merged_into_id)
        )

    # --- the profile page ---

    @admin.display(description="traits")
    def traits_table(self, obj: Profile):
        return render_to_string(
            "admin/profiles/profile/values_table.html",
            {"rows": value_rows(obj.traits, obj.trait_meta), "with_meta": True, "empty": "No traits yet."},
        )

    @admin.display(description="computed traits")
    def computed_table(self, obj: Profile):
        return render_to_string(
            "admin/profiles/profile/values_table.html",
            {"rows": value_rows(obj.computed, first=COMPUTED_ORDER), "with_meta": False, "empty": "Not computed yet."},
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self.profile_panels(request, obj))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def profile_panels(self, request, profile: Profile) -> dict:
        events = list(
            profile.events.order_by("-occurred_at", "-id").only(
                "id", "occurred_at", "type", "name", "device_type", "properties", "profile_id"
            )[:TIMELINE_LENGTH]
        )
        timeline = [
            {
                "event": event,
                "url": reverse("admin:profiles_event_change", args=[event.pk]),
                "summary": properties_summary(event.properties),
            }
            for event in events
        ]
        merges = list(
            Merge.objects.filter(Q(winner=profile) | Q(loser=profile))
            .select_related("winner", "loser")
            .defer(
                "winner_before",
                "loser_before",
                "moved_event_ids",
                "moved_identifier_ids",
                "winner__computed",
                "winner__trait_meta",
                "loser__computed",
                "loser__trait_meta",
            )
            .order_by("-created_at", "-id")[:MERGE_HISTORY_LENGTH]
        )
        allowed = self.has_unmerge_permission(request)
        history = []
        for merge in merges:
            is_winner = merge.winner_id == profile.pk
            other = merge.loser if is_winner else merge.winner
            undoable = merge.status == MergeStatus.MERGED and merge.undone_at is None
            history.append(
                {
                    "merge": merge,
                    "role": "winner" if is_winner else "merged away",
                    "other": other,
                    "other_url": profile_url(other.pk),
                    "merge_url": reverse("admin:profiles_merge_change", args=[merge.pk]),
                    "evidence": Truncator(display_value({k: v for k, v in merge.evidence.items() if v})).chars(200),
                    "unmerge_url": (
                        reverse("admin:profiles_profile_unmerge", args=[profile.pk, merge.pk])
                        if undoable and allowed
                        else None
                    ),
                }
            )
        survivor = survivor_of(profile)
        return {
            "profile_nav": profile_panels(),
            "app_panels": profile_panels_html(request=request, profile=profile),
            "merged_survivor": survivor if survivor.pk != profile.pk else None,
            "timeline_panel": render_to_string(
                "admin/profiles/profile/timeline.html",
                {
                    "rows": timeline,
                    "limit": TIMELINE_LENGTH,
                    "all_url": reverse("admin:profiles_event_changelist") + f"?profile={profile.pk}",
                },
            ),
            "merge_history_panel": render_to_string(
                "admin/profiles/profile/merge_history.html", {"rows": history, "limit": MERGE_HISTORY_LENGTH}
            ),
        }

    # --- unmerge ---

    def get_urls(self):
        custom = [
            path(
                "<uuid:profile_id>/unmerge/<int:merge_id>/",
                self.admin_site.admin_view(self.unmerge_view),
                name="profiles_profile_unmerge",
            )
        ]
        return custom + super().get_urls()

    def unmerge_view(self, request, profile_id, merge_id):
        """POST only (CSRF protected by admin_view); calls profile_unmerge and reports the outcome."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_unmerge_permission(request):
            raise PermissionDenied
        profile = self.get_object(request, str(profile_id))
        if profile is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(profile_id))
        page = HttpResponseRedirect(profile_url(profile.pk))
        merge = Merge.objects.filter(Q(winner=profile) | Q(loser=profile), pk=merge_id).first()
        if merge is None:
            messages.error(request, f"Merge #{merge_id} does not involve this profile.")
            return page
        try:
            services.profile_unmerge(merge=merge, actor=request.user.get_username())
        except ValueError as exc:
            messages.error(request, f"Merge #{merge.pk} was not undone: {exc}")
            return page
        messages.success(
            request,
            f"Merge #{merge.pk} undone: profile {short_id(merge.loser_id)} is separate again from "
            f"{short_id(merge.winner_id)}, with its identifiers and events back.",
        )
        return page


def survivor_of(profile: Profile, max_hops: int = 10) -> Profile:
    """The live profile a merged-away one ended up in (merged_into is repointed, so usually one hop)."""
    current, seen = profile, {profile.pk}
    while current.merged_into_id and current.merged_into_id not in seen and len(seen) <= max_hops:
        current = Profile.objects.only("id", "traits", "merged_into").get(pk=current.merged_into_id)
        seen.add(current.pk)
    return current
