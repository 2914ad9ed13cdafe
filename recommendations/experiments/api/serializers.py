"""Input and output serializers of /api/v1/experiments/ and /api/v1/bandits/."""

from __future__ import annotations

from rest_framework import serializers

from recommendations.experiments.models import BUCKETS, BanditPolicy, Experiment, Metric, Variant
from recommendations.experiments.services import EDITABLE


class VariantInput(serializers.Serializer):
    key = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    weight = serializers.IntegerField(min_value=0, max_value=100, help_text="Percent; the variants sum to 100.")
    is_control = serializers.BooleanField(required=False, default=False)
    personalised = serializers.BooleanField(required=False, default=True, help_text="False: the popular list.")
    model_version = serializers.IntegerField(required=False, allow_null=True, default=None)
    rerank = serializers.BooleanField(required=False, default=True)
    rule_set = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class ExperimentInput(serializers.Serializer):
    key = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    hypothesis = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
    placements = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False)
    layer = serializers.SlugField(max_length=100, required=False)
    layer_start = serializers.IntegerField(min_value=0, max_value=BUCKETS - 1, required=False)
    layer_end = serializers.IntegerField(min_value=1, max_value=BUCKETS, required=False)
    target_segments = serializers.ListField(child=serializers.SlugField(max_length=200), required=False)
    primary_metric = serializers.ChoiceField(choices=Metric.choices, required=False)
    guardrail_metrics = serializers.ListField(
        child=serializers.CharField(max_length=16),
        required=False,
        help_text="Metrics judged beside the primary one: ctr, conversion, revenue, aov.",
    )
    attribution_hours = serializers.IntegerField(min_value=1, max_value=24 * 90, required=False)
    cuped_days = serializers.IntegerField(min_value=0, max_value=365, required=False)
    alpha = serializers.FloatField(min_value=0.001, max_value=0.2, required=False)
    sequential = serializers.BooleanField(required=False)
    sequential_tuning = serializers.IntegerField(
        min_value=10, max_value=100_000_000, required=False, help_text="N* of the confidence sequence (default 5000)."
    )
    variants = VariantInput(many=True, allow_empty=False)


class ExperimentPatchInput(ExperimentInput):
    key = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class ShipInput(serializers.Serializer):
    variant = serializers.SlugField(max_length=100)


class VariantOutput(serializers.ModelSerializer):
    class Meta:
        model = Variant
        fields = ["key", "name", "weight", "is_control", "personalised", "model_version", "rerank", "rule_set"]


class ExperimentOutput(serializers.ModelSerializer):
    variants = VariantOutput(many=True, read_only=True)
    placements = serializers.ListField(child=serializers.CharField())
    target_segments = serializers.ListField(child=serializers.CharField())
    guardrail_metrics = serializers.ListField(child=serializers.CharField())
    allocation = serializers.ListField(
        child=serializers.ListField(), help_text="[[first bucket, after last, variant], ...] of 10,000 buckets"
    )
    history = serializers.ListField(child=serializers.DictField())

    class Meta:
        model = Experiment
        fields = [
            "key",
            *EDITABLE,  # every field the services let a marketer set, in the same order
            "status",
            "shipped_variant",
            "variants",
            "allocation",
            "started_at",
            "stopped_at",
            "history",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AssignmentQueryInput(serializers.Serializer):
    profile_id = serializers.UUIDField(required=False)
    user_id = serializers.CharField(max_length=255, required=False)
    anonymous_id = serializers.CharField(max_length=255, required=False)
    placement = serializers.CharField(max_length=100)
    device = serializers.ChoiceField(choices=["desktop", "mobile", "tablet"], required=False, default="")


class AssignmentOutput(serializers.Serializer):
    profile_id = serializers.UUIDField(allow_null=True)
    placement = serializers.CharField()
    experiment = serializers.CharField(allow_null=True)
    variant = serializers.CharField(allow_null=True)
    policy = serializers.CharField(allow_null=True)
    propensity = serializers.FloatField()
    personalised = serializers.BooleanField()
    model_version = serializers.IntegerField(allow_null=True)
    rerank = serializers.BooleanField()
    rule_set = serializers.CharField(allow_null=True)


class ResultsOutput(serializers.Serializer):
    experiment = serializers.CharField()
    computed_at = serializers.DateTimeField()
    srm = serializers.DictField()
    units = serializers.DictField()
    excluded = serializers.DictField(help_text="units that saw several variants, per variant")
    metrics = serializers.ListField(child=serializers.DictField(), help_text="per metric and variant vs control")


class ArmInput(serializers.Serializer):
    key = serializers.SlugField(max_length=100)
    personalised = serializers.BooleanField(required=False, default=True)
    model_version = serializers.IntegerField(required=False, allow_null=True, default=None)
    rerank = serializers.BooleanField(required=False, default=True)
    rule_set = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class BanditInput(serializers.Serializer):
    key = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    placements = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False)
    arms = ArmInput(many=True, allow_empty=False)
    context_segments = serializers.ListField(child=serializers.SlugField(max_length=200), required=False)
    burn_in = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False)
    floor = serializers.FloatField(min_value=0, max_value=0.5, required=False)
    window_hours = serializers.IntegerField(min_value=1, max_value=24 * 30, required=False)


class BanditOutput(serializers.ModelSerializer):
    placements = serializers.ListField(child=serializers.CharField())
    context_segments = serializers.ListField(child=serializers.CharField())
    arms = serializers.ListField(child=serializers.DictField())
    state = serializers.DictField()

    class Meta:
        model = BanditPolicy
        fields = [
            "key",
            "name",
            "placements",
            "arms",
            "context_segments",
            "burn_in",
            "floor",
            "window_hours",
            "status",
            "state",
            "updated_at",
            "created_at",
        ]
        read_only_fields = fields


class PowerInput(serializers.Serializer):
    baseline_mean = serializers.FloatField(help_text="The control's mean of the metric (e.g. 0.1 for 10 %).")
    baseline_sd = serializers.FloatField(
        required=False, min_value=0, help_text="Its standard deviation per unit (default: sqrt(p(1-p)) for a rate)."
    )
    mde = serializers.FloatField(required=False, min_value=0.0001, help_text="Relative lift to detect (0.05 = 5 %).")
    units = serializers.IntegerField(required=False, min_value=2, help_text="Units per variant (gives the MDE).")
    units_per_day = serializers.FloatField(required=False, min_value=0.1, help_text="Across the experiment.")
    power = serializers.FloatField(required=False, default=0.8, min_value=0.5, max_value=0.99)
    alpha = serializers.FloatField(required=False, default=0.05, min_value=0.001, max_value=0.2)
    variants = serializers.IntegerField(required=False, default=2, min_value=2, max_value=20)

    def validate(self, attrs: dict) -> dict:
        if (attrs.get("mde") is None) == (attrs.get("units") is None):
            raise serializers.ValidationError({"mde": ["Give either mde or units."]})
        mean = attrs["baseline_mean"]
        if mean == 0:
            raise serializers.ValidationError({"baseline_mean": ["A relative lift needs a non-zero baseline."]})
        if attrs.get("baseline_sd") is None:
            if not 0 < mean < 1:
                raise serializers.ValidationError(
                    {"baseline_sd": ["Give the standard deviation of a non-rate metric."]}
                )
            attrs["baseline_sd"] = (mean * (1 - mean)) ** 0.5
        if attrs["baseline_sd"] == 0:
            raise serializers.ValidationError({"baseline_sd": ["Must be above 0."]})
        return attrs
