"""Admin of profiles: sources and keys, profile search and pages, merges, the review queue, events.

Profiles, identifiers, events, merges and match candidates are written by ingestion and identity
resolution only, so their admin pages are read-only; the one write offered here is undoing a merge,
which goes through ``profiles.services.profile_unmerge``. The events table is the largest in the
system: its list never counts all rows, never sorts the whole table by default and builds its date
navigation from indexed profile columns instead of scanning events.
"""

from __future__ import annotations

import calendar
import json
import re
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, Max, Min, OuterRef, Q, Subquery
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from . import services
from .identity.merge import trait_value
from .models import (
    CandidateStatus,
    Event,
    Identifier,
    MatchCandidate,
    MatchingRun,
    Merge,
    MergeStatus,
    Profile,
    Source,
)
from .normalize import identifier_kinds, normalize_identifier

TIMELINE_LENGTH = 50
MERGE_HISTORY_LENGTH = 100
EMPTY = "—"


@admin.register(Source)
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


# --- shared pieces -------------------------------------------------------------------------------


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows (``SELECT count(*) FROM (... LIMIT cap+1)``), never the whole table.

    Past the cap the list says "10000+" and offers the first ``cap`` rows; filters narrow the rest.
    """

    cap = 10_000
    capped = False

    @cached_property
    def count(self) -> int:
        counted = self.object_list.order_by().values("pk")[: self.cap + 1].count()  # no annotations, no joins
        self.capped = counted > self.cap
        return min(counted, self.cap)


class DefaultChoiceFilter(admin.SimpleListFilter):
    """A filter applying ``default`` when its parameter is absent, with an explicit "all" choice."""

    default = "all"

    def current(self) -> str:
        return self.value() or self.default

    def choices(self, changelist):
        current = self.current()
        counts = self.get_facet_queryset(changelist) if changelist.add_facets else {}
        for i, (lookup, title) in enumerate(self.lookup_choices):
            count = counts.get(f"{i}__c", -1)
            yield {
                "selected": current == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": f"{title} ({count})" if count != -1 else title,
            }


def can_unmerge(user) -> bool:
    return user.is_active and user.has_perm("profiles.change_merge")


def profile_url(pk) -> str:
    return reverse("admin:profiles_profile_change", args=[pk])


def profile_link(profile: Profile | None):
    if profile is None:
        return EMPTY
    return format_html('<a href="{}">{}</a>', profile_url(profile.pk), str(profile))


def short_id(pk) -> str:
    return str(pk)[:8]


def display_name(traits: dict) -> str:
    name = trait_value(traits, "name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [trait_value(traits, "first_name"), trait_value(traits, "last_name")]
    return " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def display_value(value) -> str:
    """One trait value as readable text (ISO times shortened, containers compact)."""
    if value is None or value == "" or value == {} or value == []:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
            try:
                return date_format(timezone.localtime(datetime.fromisoformat(value)), "Y-m-d H:i")
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {display_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(display_value(v) for v in value)
    return str(value)


COMPUTED_ORDER = [
    "orders",
    "revenue",
    "avg_order_value",
    "recency_days",
    "frequency",
    "monetary",
    "first_order_at",
    "last_order_at",
    *(f"{kind}_{days}d" for days in (30, 90, 365) for kind in ("orders", "revenue")),
    "engagement_score",
    "events",
    "sessions",
    "sessions_30d",
    "top_category",
    "category_affinity",
    "cart_abandoned",
    "last_cart_at",
    "preferred_device",
    "preferred_hour",
    "first_seen_at",
    "last_seen_at",
]
TRAITS_FIRST = ["email", "phone", "user_id", "name", "first_name", "last_name", "birthday"]


def ordered_keys(keys, first: list[str]) -> list[str]:
    """Known keys in a readable order, then the rest alphabetically (jsonb keeps no order)."""
    rank = {key: i for i, key in enumerate(first)}
    return sorted(keys, key=lambda key: (rank.get(key, len(rank)), key))


def value_rows(data: dict, meta: dict | None = None, first: list[str] = TRAITS_FIRST) -> list[dict]:
    """Rows for a trait table; nested objects are spread one level (``category_affinity.views``)."""
    rows = []
    for key in ordered_keys(data, first):
        value = data[key]
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows.extend({"key": f"{key}.{sub}", "value": display_value(v)} for sub, v in value.items())
            continue
        row = {"key": key, "value": display_value(value)}
        if meta is not None:
            info = meta.get(key) or {}
            row["first"] = display_value(info.get("first"))
            row["updated"] = display_value(info.get("at"))
        rows.append(row)
    return rows


def figure(value, pattern: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return EMPTY
    return pattern.format(value)


def properties_summary(properties, limit: int = 120) -> str:
    """A one-line summary of an event's properties (scalars first, containers as counts)."""
    if not isinstance(properties, dict) or not properties:
        return ""
    parts = []
    for key, value in properties.items():
        if isinstance(value, list):
            parts.append(f"{key}: [{len(value)}]")
        elif isinstance(value, dict):
            parts.append(f"{key}: {{…}}")
        else:
            parts.append(f"{key}: {value}")
    return Truncator(", ".join(parts)).chars(limit)


def pretty_json(value):
    if value in (None, {}, []):
        return EMPTY
    return format_html(
        '<pre style="margin:0;white-space:pre-wrap">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )


# --- search by any identifier --------------------------------------------------------------------

_HEX_PREFIX = re.compile(r"[0-9a-f]{4,32}")


def search_kinds() -> list[str]:
    return list(dict.fromkeys([*identifier_kinds(), *settings.CDP_EXTRA_IDENTIFIER_KINDS]))


def identifier_candidates(term: str) -> set[tuple[str, str]]:
    """(kind, normalised value) pairs a search term may mean; ``kind:value`` narrows to one kind."""
    term = term.strip()
    kinds = search_kinds()
    pairs = set()
    head, sep, rest = term.partition(":")
    if sep and head.strip().lower() in kinds and rest.strip():
        kind = head.strip().lower()
        value = normalize_identifier(kind, rest.strip())
        if value:
            pairs.add((kind, value))
    for kind in kinds:
        value = normalize_identifier(kind, term)
        if value:
            pairs.add((kind, value))
    return pairs


def profile_id_q(term: str) -> Q | None:
    """A full profile id, or a hex prefix of one (as in the list's short id) as a primary-key range."""
    compact = term.strip().lower().replace("-", "")
    if not _HEX_PREFIX.fullmatch(compact):
        return None
    if len(compact) == 32:
        return Q(pk=uuid.UUID(compact))
    return Q(pk__gte=uuid.UUID(compact.ljust(32, "0")), pk__lte=uuid.UUID(compact.ljust(32, "f")))


def profile_search_q(term: str, prefix: str = "") -> Q:
    """Profiles a term finds: exact (kind, value) identifier matches (unique index) or an id (primary key)."""
    q = Q(pk__in=[])
    pairs = identifier_candidates(term)
    if pairs:
        match = Q()
        for kind, value in pairs:
            match |= Q(kind=kind, value=value)
        q |= Q(pk__in=Identifier.objects.filter(match).values("profile_id"))
    id_q = profile_id_q(term)
    if id_q is not None:
        q |= id_q
    if not prefix:
        return q
    ids = Profile.objects.filter(q).values("pk")
    return Q(**{f"{prefix}__in": ids})


# --- profiles ------------------------------------------------------------------------------------


class ProfileStatusFilter(DefaultChoiceFilter):
    """Live profiles by default; a search looks at all of them (an old id may be merged away)."""

    title = "status"
    parameter_name = "status"

    def __init__(self, request, params, model, model_admin):
        self.searching = bool(request.GET.get(SEARCH_VAR, "").strip())
        super().__init__(request, params, model, model_admin)

    @property
    def default(self) -> str:
        return "all" if self.searching else "live"

    def lookups(self, request, model_admin):
        return [("live", "Live"), ("merged", "Merged away"), ("all", "All")]

    def queryset(self, request, queryset):
        current = self.current()
        if current == "live":
            return queryset.filter(merged_into__isnull=True)
        if current == "merged":
            return queryset.filter(merged_into__isnull=False)
        return queryset


class IdentifierInline(admin.TabularInline):
    model = Identifier
    fields = ["kind", "value", "created_at", "last_seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("kind", "value")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
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
        "An email, phone, user id, anonymous id or other identifier (any spelling; kind:value narrows "
        "to one kind), or a profile id or its first characters."
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

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # data is not edited by hand; the page is a view

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # erasure is a data-subject request (consent), not a row delete

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


# --- merges --------------------------------------------------------------------------------------


class UndoneFilter(admin.SimpleListFilter):
    title = "undone"
    parameter_name = "undone"

    def lookups(self, request, model_admin):
        return [("no", "Not undone"), ("yes", "Undone")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(undone_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(undone_at__isnull=True)
        return queryset


@admin.register(Merge)
class MergeAdmin(admin.ModelAdmin):
    """The merge log: read-only; merges are undone with the action (profiles.services.profile_unmerge)."""

    list_display = ["id", "winner_link", "loser_link", "status", "reason", "score", "actor", "created_at", "undone_at"]
    list_filter = ["status", "reason", UndoneFilter]
    list_select_related = ["winner", "loser"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    search_fields = ["=winner__identifiers__value"]  # shows the search box; get_search_results does the work
    search_help_text = "An identifier or profile id of the winner or the loser."
    ordering = ["-created_at"]
    actions = ["undo_selected"]
    fields = [
        "id",
        "winner",
        "loser",
        "status",
        "reason",
        "score",
        "actor",
        "created_at",
        "undone_at",
        "undone_by",
        "evidence_pretty",
        "moved",
        "winner_before_pretty",
        "loser_before_pretty",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        heavy = ["winner_before", "loser_before", "moved_event_ids", "moved_identifier_ids"]
        match = getattr(request, "resolver_match", None)
        queryset = super().get_queryset(request)
        if match is not None and match.url_name == "profiles_merge_changelist":
            queryset = queryset.select_related("winner", "loser").defer(
                *heavy, "evidence", "winner__computed", "winner__trait_meta", "loser__computed", "loser__trait_meta"
            )
        return queryset

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(profile_search_q(search_term, "winner") | profile_search_q(search_term, "loser")), False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_unmerge_permission(self, request) -> bool:
        return can_unmerge(request.user)

    @admin.display(description="winner")
    def winner_link(self, obj: Merge):
        return profile_link(obj.winner)

    @admin.display(description="loser")
    def loser_link(self, obj: Merge):
        return profile_link(obj.loser)

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: Merge):
        return pretty_json(obj.evidence)

    @admin.display(description="moved")
    def moved(self, obj: Merge) -> str:
        return f"{len(obj.moved_identifier_ids)} identifier(s), {len(obj.moved_event_ids)} event(s)"

    @admin.display(description="winner before")
    def winner_before_pretty(self, obj: Merge):
        return pretty_json(obj.winner_before)

    @admin.display(description="loser before")
    def loser_before_pretty(self, obj: Merge):
        return pretty_json(obj.loser_before)

    @admin.action(description="Undo selected merges", permissions=["unmerge"])
    def undo_selected(self, request, queryset):
        undone, failed = 0, []
        # newest first, so a later merge of the same profiles is undone before an earlier one
        for merge in queryset.select_related(None).order_by("-created_at", "-id").only("id"):
            try:
                services.profile_unmerge(merge=merge, actor=request.user.get_username())
            except ValueError as exc:
                failed.append(f"#{merge.pk} ({exc})")
            else:
                undone += 1
        messages.success(request, f"Undid {undone} merge(s).")
        if failed:
            messages.error(request, f"{len(failed)} merge(s) could not be undone: {'; '.join(failed)}")


# --- review queue --------------------------------------------------------------------------------


class CandidateStatusFilter(DefaultChoiceFilter):
    title = "status"
    parameter_name = "status"
    default = CandidateStatus.PENDING

    def lookups(self, request, model_admin):
        return [*CandidateStatus.choices, ("all", "All")]

    def queryset(self, request, queryset):
        current = self.current()
        return queryset if current == "all" else queryset.filter(status=current)


@admin.register(MatchCandidate)
class MatchCandidateAdmin(admin.ModelAdmin):
    """The review queue of possible duplicates, with a side-by-side comparison of both profiles.

    Fields are read-only; decisions are the actions "approve" (merge through the usual guards and
    Merge record) and "reject" (a never-merge pair), which call the identity services.
    """

    actions = ["approve_selected", "reject_selected"]

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("profiles.change_matchcandidate")

    def _decide(self, request, queryset, service, verb: str) -> None:
        done, failed = 0, []
        for candidate in queryset.order_by("-score"):
            try:
                service(candidate=candidate, actor=request.user.get_username())
                done += 1
            except ValueError as exc:
                failed.append(f"#{candidate.pk}: {exc}")
        self.message_user(request, f"{verb} {done} pair(s).", messages.SUCCESS if done else messages.INFO)
        if failed:
            self.message_user(request, "Not decided: " + "; ".join(failed), messages.ERROR)

    @admin.action(description="Approve: same person (merge)", permissions=["review"])
    def approve_selected(self, request, queryset):
        self._decide(request, queryset, services.candidate_approve, "Approved and merged")

    @admin.action(description="Reject: different people (never merge)", permissions=["review"])
    def reject_selected(self, request, queryset):
        self._decide(request, queryset, services.candidate_reject, "Rejected")

    list_display = ["id", "profile_a_link", "profile_b_link", "reason", "score", "status", "created_at"]
    list_filter = [CandidateStatusFilter, "reason"]
    list_select_related = ["profile_a", "profile_b"]
    ordering = ["status", "-score"]  # the (status, -score) index
    show_full_result_count = False
    fields = [
        "profile_a",
        "profile_b",
        "reason",
        "score",
        "status",
        "created_at",
        "decided_at",
        "decided_by",
        "evidence_pretty",
        "comparison",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "profiles_matchcandidate_changelist":
            heavy = ["computed", "trait_meta"]
            queryset = queryset.select_related("profile_a", "profile_b").defer(
                "evidence", *(f"{side}__{name}" for side in ("profile_a", "profile_b") for name in heavy)
            )
        return queryset

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a rejection is a never-merge record; it must not vanish by hand

    @admin.display(description="profile A")
    def profile_a_link(self, obj: MatchCandidate):
        return profile_link(obj.profile_a)

    @admin.display(description="profile B")
    def profile_b_link(self, obj: MatchCandidate):
        return profile_link(obj.profile_b)

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: MatchCandidate):
        return pretty_json(obj.evidence)

    @admin.display(description="comparison")
    def comparison(self, obj: MatchCandidate):
        a, b = obj.profile_a, obj.profile_b
        traits = [
            comparison_row(key, a.traits.get(key), b.traits.get(key))
            for key in ordered_keys(set(a.traits) | set(b.traits), TRAITS_FIRST)
        ]
        ids_a, ids_b = identifiers_by_kind(a), identifiers_by_kind(b)
        identifiers = [
            comparison_row(kind, ids_a.get(kind), ids_b.get(kind))
            for kind in ordered_keys(set(ids_a) | set(ids_b), search_kinds())
        ]
        return render_to_string(
            "admin/profiles/matchcandidate/comparison.html",
            {"a": a, "b": b, "traits": traits, "identifiers": identifiers},
        )


def _comparable(value) -> str:
    if isinstance(value, list):
        return "|".join(sorted(_comparable(v) for v in value))
    return "" if value in (None, "") else str(value).strip().casefold()


def comparison_row(key: str, a, b) -> dict:
    va, vb = _comparable(a), _comparable(b)
    if not va and not vb:
        verdict = "same"
    elif not va:
        verdict = "only B"
    elif not vb:
        verdict = "only A"
    else:
        verdict = "same" if va == vb else "different"
    return {"key": key, "a": display_value(a), "b": display_value(b), "verdict": verdict}


def identifiers_by_kind(profile: Profile) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, value in profile.identifiers.order_by("kind", "value").values_list("kind", "value"):
        found.setdefault(kind, []).append(value)
    return found


# --- events --------------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

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

    Same links and filters as Django's date hierarchy (``occurred_at__year`` …); a month or day
    without events simply shows an empty list.
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
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [{"link": link({names[0]: y}), "title": str(y)} for y in range(bounds[0].year, bounds[1].year + 1)],
    }


@admin.register(MatchingRun)
class MatchingRunAdmin(admin.ModelAdmin):
    """Fuzzy-matching runs: progress while running, the report after; buttons start a run now."""

    list_display = ["id", "mode", "status", "progress_bar", "requested_by", "created_at", "finished_at", "summary"]
    list_filter = ["status", "mode"]
    readonly_fields = [f.name for f in MatchingRun._meta.fields] + ["progress_bar", "report_pretty"]
    exclude = ["report"]
    change_list_template = "admin/profiles/matchingrun/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress_bar(self, obj: MatchingRun):
        return format_html(
            '<progress max="100" value="{}" style="width:10em"></progress> {}% ({} / {})',
            obj.progress_percent,
            obj.progress_percent,
            obj.progress_done,
            obj.progress_total,
        )

    @admin.display(description="result")
    def summary(self, obj: MatchingRun):
        if obj.error:
            return obj.error[:120]
        report = obj.report or {}
        keys = [k for k in ("profiles", "compared", "merged", "queued", "refused", "seconds") if k in report]
        return ", ".join(f"{k} {report[k]}" for k in keys)

    @admin.display(description="report")
    def report_pretty(self, obj: MatchingRun):
        return pretty_json(obj.report)

    def get_urls(self):
        return [
            path("start/<str:mode>/", self.admin_site.admin_view(self.start_view), name="profiles_matchingrun_start"),
            *super().get_urls(),
        ]

    def start_view(self, request, mode: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("profiles.change_matchcandidate"):
            raise PermissionDenied
        try:
            run = services.matching_run_start(mode=mode, requested_by=request.user.get_username())
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Matching run {run.pk} ({run.mode}) is {run.status}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:profiles_matchingrun_changelist"))
