"""Admin of experiments and bandits: create/edit with validation and a preview of the traffic split,
a results page (per-variant table, cumulative lift with its confidence sequence, SRM banner,
start/stop/ship), a bandit page (arm shares over time, off-policy evaluation). Every write goes
through ``experiments.services``."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms import formset_factory
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from . import assignment, charts, selectors, services
from .models import BUCKETS, BanditPolicy, BanditStatus, Experiment, ExperimentStatus, Metric


def _csv(value: str) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class ExperimentForm(forms.Form):
    key = forms.SlugField(max_length=100)
    name = forms.CharField(max_length=200, required=False)
    hypothesis = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), required=False)
    placements = forms.CharField(help_text="comma-separated, e.g. home, cart")
    layer = forms.SlugField(max_length=100, initial="default", help_text="experiments of one layer never overlap")
    layer_start = forms.IntegerField(min_value=0, max_value=BUCKETS - 1, initial=0)
    layer_end = forms.IntegerField(min_value=1, max_value=BUCKETS, initial=BUCKETS, help_text="of 10,000 buckets")
    target_segments = forms.CharField(required=False, help_text="segment slugs, comma-separated; empty: everybody")
    primary_metric = forms.ChoiceField(choices=Metric.choices, initial=Metric.CONVERSION)
    guardrail_metrics = forms.MultipleChoiceField(
        choices=Metric.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    attribution_hours = forms.IntegerField(min_value=1, initial=168)
    cuped_days = forms.IntegerField(min_value=0, initial=14)
    alpha = forms.FloatField(min_value=0.001, max_value=0.2, initial=0.05)
    sequential = forms.BooleanField(required=False, initial=True, help_text="always-valid intervals (safe to peek)")
    sequential_tuning = forms.IntegerField(
        min_value=10, initial=5000, help_text="N*: the units at which the always-valid interval is tightest"
    )


class VariantForm(forms.Form):
    key = forms.SlugField(max_length=100)
    name = forms.CharField(max_length=200, required=False)
    weight = forms.IntegerField(min_value=0, max_value=100)
    is_control = forms.BooleanField(required=False)
    personalised = forms.BooleanField(required=False, initial=True)
    model_version = forms.IntegerField(required=False, min_value=1)
    rerank = forms.BooleanField(required=False, initial=True)
    rule_set = forms.CharField(max_length=100, required=False)


VariantFormSet = formset_factory(VariantForm, extra=0, min_num=2, validate_min=True)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "status", "placements_list", "layer_share", "primary_metric", "started_at", "links"]
    list_filter = ["status"]
    search_fields = ["key", "name", "hypothesis"]

    @admin.display(description="placements")
    def placements_list(self, obj):
        return ", ".join(obj.placements)

    @admin.display(description="layer share")
    def layer_share(self, obj):
        return f"{obj.layer} {obj.layer_start}-{obj.layer_end}"

    @admin.display(description="")
    def links(self, obj):
        return format_html(
            '<a href="{}">results</a>', reverse("admin:recommendations_experiment_results", args=[obj.pk])
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/results/", view(self.results_view), name="recommendations_experiment_results"),
            path("<int:pk>/act/<str:verb>/", view(self.act_view), name="recommendations_experiment_act"),
            *super().get_urls(),
        ]

    # --- create / edit ---------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._form_view(request, None)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_change_permission(request):
            raise PermissionDenied
        return self._form_view(request, get_object_or_404(Experiment, pk=object_id))

    def _form_view(self, request, experiment: Experiment | None):
        preview = None
        if request.method == "POST":
            form = ExperimentForm(request.POST)
            formset = VariantFormSet(request.POST, prefix="variants")
            if experiment is not None:
                form.fields["key"].required = False
            if form.is_valid() and formset.is_valid():
                data = dict(form.cleaned_data)
                data["placements"] = _csv(data["placements"])
                data["target_segments"] = _csv(data["target_segments"])
                variants = [{**v, "model_version": v.get("model_version") or None} for v in formset.cleaned_data if v]
                if "_preview" in request.POST:
                    preview = self._preview(experiment, data, variants)
                else:
                    key = data.pop("key", None)
                    by = f"admin:{request.user.get_username()}"
                    try:
                        if experiment is None:
                            experiment = services.experiment_create(key=key, variants=variants, by=by, **data)
                            self.message_user(request, f"Experiment {experiment.key} created (a draft).")
                        else:
                            services.experiment_update(experiment=experiment, variants=variants, by=by, **data)
                            self.message_user(request, f"Experiment {experiment.key} saved.")
                        return HttpResponseRedirect(
                            reverse("admin:recommendations_experiment_results", args=[experiment.pk])
                        )
                    except services.ExperimentInvalid as exc:
                        for field, errors in exc.errors.items():
                            target = field if field in form.fields else None
                            for message in errors:
                                form.add_error(target, message if target else f"{field}: {message}")
        elif experiment is not None:
            form = ExperimentForm(
                initial={
                    **{f: getattr(experiment, f) for f in services.EDITABLE},
                    "key": experiment.key,
                    "placements": ", ".join(experiment.placements),
                    "target_segments": ", ".join(experiment.target_segments),
                }
            )
            formset = VariantFormSet(
                prefix="variants",
                initial=[{f: getattr(v, f) for f in services.VARIANT_FIELDS} for v in experiment.variants.all()],
            )
        else:
            form = ExperimentForm()
            formset = VariantFormSet(
                prefix="variants",
                initial=[
                    {"key": "control", "weight": 50, "is_control": True, "personalised": False, "rerank": True},
                    {"key": "treatment", "weight": 50, "personalised": True, "rerank": True},
                ],
            )
        if experiment is not None:
            form.fields["key"].disabled = True
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Edit experiment {experiment.key}" if experiment else "New experiment",
            "experiment": experiment,
            "form": form,
            "formset": formset,
            "preview": preview,
            "known_placements": services.known_placements(),
        }
        return TemplateResponse(request, "admin/recommendations/experiment/form.html", context)

    def _preview(self, experiment, data, variants) -> dict:
        weights = {v["key"]: int(v["weight"]) for v in variants}
        total = sum(weights.values())
        out = {"total": total, "errors": []}
        if total != 100:
            out["errors"].append(f"Variant weights must sum to 100; they sum to {total}.")
            return out
        old = experiment.allocation if experiment else []
        new = assignment.reallocate(old, weights)
        share = (data["layer_end"] - data["layer_start"]) / BUCKETS
        bar = [(key, round(w * share * 100)) for key, w in weights.items()]
        if share < 1:
            bar.append(("", round((1 - share) * 10_000)))
        out.update(
            {
                "svg": mark_safe(charts.split_bar(bar)),  # noqa: S308 - built from escaped parts
                "moved": assignment.moved(old, new) if old else None,
                "layer_share": share,
                "rows": [(k, w, round(w * share, 2)) for k, w in weights.items()],
            }
        )
        return out

    # --- results and actions ---------------------------------------------------------------------

    def results_view(self, request, pk: int):
        experiment = get_object_or_404(Experiment, pk=pk)
        results = selectors.experiment_results(experiment=experiment, refresh=experiment.started_at is not None)
        series: dict[str, list] = {}
        for row in selectors.experiment_series(experiment=experiment):
            series.setdefault(row["variant"], []).append(
                (row["at"].timestamp() / 86400, row["lift"], row["low"], row["high"])
            )
        labels = dict(Metric.choices) | {"converted": "converted (any order)"}
        rows = [
            {
                **r,
                "metric_label": labels.get(r["metric"], r["metric"]),
                "lift_text": "" if r.get("lift") is None else f"{r['lift']:+.1%}",
                "interval_text": "—"
                if r.get("low") is None or r.get("high") is None
                else f"[{r['low']:+.1%}, {r['high']:+.1%}]",
            }
            for r in results["metrics"]
        ]
        chart = charts.line_chart(series, y_label="cumulative lift", x_label="looks over time (days)", percent=True)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Experiment {experiment.key}",
            "experiment": experiment,
            "results": results,
            "rows": rows,
            "chart": mark_safe(chart),  # noqa: S308 - built from escaped parts
            "variants": list(experiment.variants.all()),
            "can_start": experiment.status == ExperimentStatus.DRAFT,
            "can_stop": experiment.status == ExperimentStatus.RUNNING,
            "can_ship": experiment.status in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED),
            "looks": len(next(iter(series.values()), [])),
        }
        return TemplateResponse(request, "admin/recommendations/experiment/results.html", context)

    def act_view(self, request, pk: int, verb: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        experiment = get_object_or_404(Experiment, pk=pk)
        by = f"admin:{request.user.get_username()}"
        try:
            if verb == "start":
                services.experiment_start(experiment=experiment, by=by)
            elif verb == "stop":
                services.experiment_stop(experiment=experiment, by=by)
            elif verb == "ship":
                services.experiment_ship(experiment=experiment, variant=request.POST.get("variant", ""), by=by)
            elif verb == "snapshot":
                selectors.experiment_results(experiment=experiment, snapshot=True)
            else:
                raise PermissionDenied
        except services.ExperimentInvalid as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Experiment {experiment.key}: {verb} done.")
        return HttpResponseRedirect(reverse("admin:recommendations_experiment_results", args=[pk]))


class BanditPolicyForm(forms.ModelForm):
    """The admin's bandit form: the services' validation, with its messages on the fields (before
    anything is saved)."""

    class Meta:
        model = BanditPolicy
        fields = ["key", "name", "placements", "arms", "context_segments", "burn_in", "floor", "window_hours", "status"]
        help_texts = {
            "arms": 'a JSON list, e.g. [{"key": "personal"}, {"key": "popular", "personalised": false}]; '
            "an arm may set personalised, model_version, rerank and rule_set",
            "placements": "comma-separated, e.g. cart",
        }

    def clean(self):
        data = super().clean()
        arms = data.get("arms")
        if "arms" in data and not (isinstance(arms, list) and all(isinstance(a, dict) for a in arms)):
            self.add_error("arms", 'A JSON list of arms, e.g. [{"key": "personal"}, {"key": "popular"}].')
            return data
        if self.errors:
            return data
        errors = services.bandit_validate(
            fields={"placements": data.get("placements") or [], "floor": data.get("floor", 0.01)},
            arms=arms or [],
            pk=self.instance.pk,
            running=data.get("status") == BanditStatus.RUNNING,
        )
        if not self.instance.pk and BanditPolicy.objects.filter(key=data.get("key")).exists():
            errors.pop("key", None)  # the model form says it already
        for field, messages_ in errors.items():
            self.add_error(field if field in self.fields else None, messages_)
        return data


@admin.register(BanditPolicy)
class BanditPolicyAdmin(admin.ModelAdmin):
    form = BanditPolicyForm
    list_display = ["key", "name", "status", "placements_list", "burn_in", "floor", "updated_at", "links"]
    readonly_fields = ["state", "updated_at", "created_at"]
    fields = ["key", "name", "placements", "arms", "context_segments", "burn_in", "floor", "window_hours", "status"]

    @admin.display(description="placements")
    def placements_list(self, obj):
        return ", ".join(obj.placements)

    @admin.display(description="")
    def links(self, obj):
        return format_html(
            '<a href="{}">arm shares</a>', reverse("admin:recommendations_banditpolicy_shares", args=[obj.pk])
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/shares/",
                self.admin_site.admin_view(self.shares_view),
                name="recommendations_banditpolicy_shares",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj, form, change) -> None:
        try:
            if change:
                obj.save()
                services.bandit_set_status(policy=obj, status=obj.status)
            else:
                created = services.bandit_create(
                    key=obj.key,
                    arms=obj.arms,
                    placements=obj.placements,
                    name=obj.name,
                    context_segments=obj.context_segments,
                    burn_in=obj.burn_in,
                    floor=obj.floor,
                    window_hours=obj.window_hours,
                )
                obj.pk = created.pk
        except services.ExperimentInvalid as exc:
            self.message_user(request, str(exc), messages.ERROR)

    def shares_view(self, request, pk: int):
        from .bandits import policy_evaluation

        policy = get_object_or_404(BanditPolicy, pk=pk)
        series: dict[str, list] = {}
        snaps = list(policy.snapshots.order_by("at"))
        for snap in snaps:
            for arm, share in snap.shares.items():
                series.setdefault(arm, []).append((snap.at.timestamp() / 3600, share, None, None))
        chart = charts.line_chart(series, y_label="arm share", x_label="updates over time (hours)", zero_line=False)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Bandit {policy.key}",
            "policy": policy,
            "chart": mark_safe(chart),  # noqa: S308 - built from escaped parts
            "contexts": sorted((policy.state or {}).get("contexts", {}).items()),
            "evaluation": policy_evaluation(policy_id=policy.pk),
            "updates": len(snaps),
        }
        return TemplateResponse(request, "admin/recommendations/banditpolicy/shares.html", context)
