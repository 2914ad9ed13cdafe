"""Admin of recommendations: catalog, model versions (metrics, promote/rollback, refresh now,
progress, CTR per version), business rules, and the read-only log of recommendations served.
Every write goes through ``recommendations.services``."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from cdp.admin_readonly import ReadOnlyAdminMixin
from profiles.admin import pretty_json
from profiles.admin.panels import PanelContent, register_profile_panel

from . import reports, services
from .models import BusinessRule, ModelStatus, ModelVersion, Placement, Product, RecommendationServed

METRIC_COLUMNS = ("ndcg@10", "map@10", "precision@10", "recall@10", "hit_rate@10", "coverage")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "category", "brand", "price", "in_stock", "first_seen_source", "updated_at"]
    list_filter = ["in_stock", "first_seen_source"]
    search_fields = ["sku", "title", "brand", "category"]
    readonly_fields = ["first_seen_source", "created_at", "updated_at"]
    actions = ["mark_in_stock", "mark_out_of_stock"]

    def save_model(self, request, obj, form, change) -> None:
        item = {"sku": obj.sku, **{f: getattr(obj, f) for f in services.PRODUCT_FIELDS}}
        services.product_upsert_many(items=[item], source="api")

    def _set_stock(self, request, queryset, in_stock: bool) -> None:
        items = [{"sku": sku, "in_stock": in_stock} for sku in queryset.values_list("sku", flat=True)]
        result = services.product_upsert_many(items=items)
        self.message_user(request, f"{result.updated} products marked {'in' if in_stock else 'out of'} stock.")

    @admin.action(description="Mark in stock")
    def mark_in_stock(self, request, queryset):
        self._set_stock(request, queryset, True)

    @admin.action(description="Mark out of stock")
    def mark_out_of_stock(self, request, queryset):
        self._set_stock(request, queryset, False)


def ndcg_half_interval(metrics: dict, z: float = 1.96) -> float | None:
    """Half-width of a 95 % interval on the mean nDCG@10 over the evaluated users.

    Uses the per-user standard deviation when the evaluation reports it (``ndcg@10_std``); otherwise
    the bound that holds for any score in [0, 1], var <= m(1 - m), which makes the interval
    conservative (never narrower than the truth), never invented.
    """
    value, users = metrics.get("ndcg@10"), metrics.get("users_evaluated")
    if value is None or not users:
        return None
    std = metrics.get("ndcg@10_std")
    if std is None:
        std = (max(value, 0.0) * max(1 - value, 0.0)) ** 0.5
    return z * std / users**0.5


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Model versions: the refresh's progress, metrics beside the active model's, CTR; promote and
    roll back through the registry services; a button starts a refresh now."""

    list_display = ["__str__", "state", "primary", "baseline", "ctr", "why", "created_by", "created_at"]
    list_filter = ["status"]
    exclude = ["artifact", "metrics", "baseline_metrics", "data_stats", "context_stats", "params"]
    readonly_fields = [
        f.name
        for f in ModelVersion._meta.fields
        if f.name not in ("artifact", "metrics", "baseline_metrics", "data_stats", "context_stats", "params")
    ] + ["state", "progress_bar", "metrics_table", "ctr", "params_pretty", "data_stats_pretty", "context_pretty"]
    actions = ["promote", "rollback"]
    change_list_template = "admin/recommendations/modelversion/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("artifact")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        self._ctr = reports.ctr_by_model_version()
        return super().changelist_view(request, extra_context)

    @admin.display(description="progress")
    def progress_bar(self, obj: ModelVersion):
        percent = round(100 * (obj.progress or 0))
        return format_html(
            '<progress max="100" value="{}" style="width:8em"></progress> {}% {}',
            percent,
            percent,
            obj.error[:120] if obj.error else obj.progress_message,
        )

    @admin.display(description="state")
    def state(self, obj: ModelVersion):
        """What the version is now, in words (a retired version no longer says "100 % active")."""
        when = lambda at: f"{timezone.localtime(at):%Y-%m-%d %H:%M}" if at else "?"  # noqa: E731
        if obj.status == ModelStatus.TRAINING:
            percent = round(100 * (obj.progress or 0))
            return format_html(
                '<progress max="100" value="{}" style="width:8em" data-cdp-running></progress> {}% {}',
                percent,
                percent,
                obj.progress_message,
            )
        if obj.status == ModelStatus.ACTIVE:
            return format_html('<b class="cdp-ok">serving</b> since {}', when(obj.promoted_at or obj.finished_at))
        if obj.status == ModelStatus.RETIRED:
            served = f", served from {when(obj.promoted_at)}" if obj.promoted_at else ", never served"
            return f"retired {when(obj.retired_at)}{served}"
        if obj.status == ModelStatus.FAILED:
            return format_html('<span class="cdp-bad">failed</span>: {}', (obj.error or "")[:120])
        return f"trained {when(obj.finished_at)}, not serving"

    @admin.display(description="why (promotion decision)")
    def why(self, obj: ModelVersion) -> str:
        return (obj.decision or "—")[:160]

    @admin.display(description="ndcg@10 (holdout, 95 % interval)")
    def primary(self, obj: ModelVersion):
        metrics = obj.metrics or {}
        value = metrics.get("ndcg@10")
        if value is None:
            return "—"
        half = ndcg_half_interval(metrics)
        return f"{value:.4f}" if half is None else f"{value:.4f} ± {half:.3f}"

    @admin.display(description="active's ndcg@10")
    def baseline(self, obj: ModelVersion):
        value = (obj.baseline_metrics or {}).get("ndcg@10")
        return "—" if value is None else f"{value:.4f}"

    @admin.display(description="CTR (served / seen / clicked)")
    def ctr(self, obj: ModelVersion):
        table = getattr(self, "_ctr", None)
        if table is None:
            table = self._ctr = reports.ctr_by_model_version()
        row = table.get(obj.pk)
        if not row:
            return "—"
        return f"{row['ctr']:.1%} ({row['served']} / {row['seen']} / {row['clicked']})"

    @admin.display(description="metrics on the holdout")
    def metrics_table(self, obj: ModelVersion):
        ours, theirs = obj.metrics or {}, obj.baseline_metrics or {}
        rows = [(name, _fmt(ours.get(name)), _fmt(theirs.get(name))) for name in METRIC_COLUMNS if name in ours]
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        half = ndcg_half_interval(ours)
        interval = (
            f"nDCG@10 {ours['ndcg@10']:.4f} ± {half:.3f} (95 % interval over {ours.get('users_evaluated')} users)."
            if half is not None
            else ""
        )
        return format_html(
            "<table><tr><th>metric</th><th>this version</th><th>baseline: the active model's recipe</th></tr>{}</table>"
            "<p>{}</p><p><b>Why:</b> {}</p>",
            body,
            interval,
            obj.decision or "—",
        )

    @admin.display(description="params")
    def params_pretty(self, obj):
        return pretty_json(obj.params)

    @admin.display(description="data")
    def data_stats_pretty(self, obj):
        return pretty_json(obj.data_stats)

    @admin.display(description="context statistics")
    def context_pretty(self, obj):
        return pretty_json(obj.context_stats)

    @admin.action(description="Promote (make active)")
    def promote(self, request, queryset):
        self._activate(request, queryset, services.model_version_promote, "promoted")

    @admin.action(description="Roll back to this retired version")
    def rollback(self, request, queryset):
        self._activate(request, queryset, services.model_version_rollback, "re-activated")

    def _activate(self, request, queryset, service, verb: str) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one version.", messages.ERROR)
            return
        version = queryset.first()
        try:
            version = service(version=version, by=request.user.get_username())
        except services.RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Model v{version.pk} {verb}; servers switch within a second.")

    def get_urls(self):
        return [
            path(
                "refresh/", self.admin_site.admin_view(self.refresh_view), name="recommendations_modelversion_refresh"
            ),
            *super().get_urls(),
        ]

    def refresh_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("recommendations.change_modelversion"):
            raise PermissionDenied
        if ModelVersion.objects.filter(status=ModelStatus.TRAINING, finished_at__isnull=True).exists():
            self.message_user(request, "A refresh is already running.", messages.WARNING)
        else:
            version = services.model_refresh_start(requested_by=request.user.get_username())
            self.message_user(request, f"Model refresh v{version.pk} queued; progress shows here.")
        return HttpResponseRedirect(reverse("admin:recommendations_modelversion_changelist"))


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    """Where the storefront shows recommendations: a key the API accepts and what it means (its kind)."""

    list_display = ["key", "name", "kind", "is_active", "default_k", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["key", "name"]

    def save_model(self, request, obj, form, change) -> None:
        services.placement_save(placement=obj)  # serving reloads placements with the catalog

    def delete_model(self, request, obj) -> None:
        services.placement_delete(placement=obj)

    def delete_queryset(self, request, queryset) -> None:
        for placement in queryset:
            services.placement_delete(placement=placement)


@admin.register(BusinessRule)
class BusinessRuleAdmin(admin.ModelAdmin):
    list_display = ["kind", "category", "factor", "placement", "is_active", "note", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["category", "note"]

    def save_model(self, request, obj, form, change) -> None:
        services.business_rule_save(rule=obj)  # serving reloads the rules with the catalog

    def delete_model(self, request, obj) -> None:
        services.business_rule_delete(rule=obj)


@admin.register(RecommendationServed)
class RecommendationServedAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "placement", "personalised", "model_version", "profile_id", "item_count"]
    list_filter = ["personalised", "placement"]
    list_select_related = ["model_version"]
    search_fields = ["=id", "=profile__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in RecommendationServed._meta.fields]

    @admin.display(description="items")
    def item_count(self, obj) -> int:
        return len(obj.items or [])


from .experiments import admin as _experiments_admin  # noqa: E402,F401  (experiments and bandits)

# --- the profile page's recommendations and experiments panels -----------------------------------


def _profile_ids(profile) -> list[str]:
    from profiles.models import Profile

    return [
        str(profile.pk),
        *(str(pk) for pk in Profile.objects.filter(merged_into=profile).values_list("pk", flat=True)),
    ]


def recommendations_panel(*, request, profile) -> PanelContent:
    rows = reports.served_with_outcomes(profile_ids=_profile_ids(profile))
    return PanelContent(
        headers=["shown", "placement", "model version", "products", "seen", "clicked"],
        rows=[
            [
                f"{timezone.localtime(r['created_at']):%Y-%m-%d %H:%M}",
                r["placement"] or "—",
                r["model_version_id"] or ("popular" if not r["personalised"] else "—"),
                ", ".join(map(str, r["items"][:6])) + (" …" if len(r["items"]) > 6 else ""),
                "yes" if r["seen"] else "no",
                format_html('<b class="cdp-ok">{}</b>', "yes") if r["clicked"] else "no",
            ]
            for r in rows
        ],
        empty="No recommendations served to this person yet.",
        note="The 20 newest, with whether an impression and a click came back." if rows else "",
    )


def experiments_panel(*, request, profile) -> PanelContent:
    """The person's experiments: variant and first exposure (from the served log), an override after
    a merge, and the bandit arms they were served."""
    from .experiments.models import ExperimentOverride, Exposure

    ids = _profile_ids(profile)
    overrides = {o.experiment_id: o.variant for o in ExperimentOverride.objects.filter(profile_id__in=ids)}
    rows = [
        [
            format_html(
                '<a href="{}">{}</a>',
                reverse("admin:recommendations_experiment_results", args=[r.experiment_id]),
                r.experiment.key,
            ),
            r.experiment.status,
            r.variant.key,
            f"{timezone.localtime(r.first_exposed_at):%Y-%m-%d %H:%M}",
            overrides.get(r.experiment_id, ""),
        ]
        for r in Exposure.objects.filter(profile_id__in=ids)
        .select_related("experiment", "variant")
        .order_by("-pk")[:20]
    ]
    bandit = (
        RecommendationServed.objects.filter(profile_id__in=ids)
        .exclude(policy="")
        .values_list("policy", "variant")
        .order_by("-created_at")[:5]
    )
    note = "; ".join(f"bandit {policy}: {arm}" for policy, arm in bandit)
    return PanelContent(
        headers=["experiment", "status", "variant", "first exposure", "override (merge: earlier exposure wins)"],
        rows=rows,
        empty="In no experiment (without personalisation consent nobody is assigned).",
        note=f"Latest bandit arms served: {note}" if note else "",
    )


register_profile_panel(
    key="recommendations", title="Recommendations served and clicked", order=40, render=recommendations_panel
)
register_profile_panel(key="experiments", title="Experiments", order=50, render=experiments_panel)
