"""List filters shared by the profiles admin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR

from ..models import CandidateStatus


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


class CandidateStatusFilter(DefaultChoiceFilter):
    title = "status"
    parameter_name = "status"
    default = CandidateStatus.PENDING

    def lookups(self, request, model_admin):
        return [*CandidateStatus.choices, ("all", "All")]

    def queryset(self, request, queryset):
        current = self.current()
        return queryset if current == "all" else queryset.filter(status=current)
