"""Experiments and bandits (models of the ``recommendations`` app; imported by recommendations.models).

- ``Experiment``: a controlled test of serving strategies on some placements. Its units (profiles) are
  hashed into 10,000 buckets of its layer (``layer_start``..``layer_end`` is its share of the layer;
  experiments of one layer never overlap, so a shopper is in at most one experiment per layer) and
  into 10,000 buckets of its own salt, which ``allocation`` maps to variants.
- ``Variant``: one serving strategy (personalised or not, a model version, re-ranking, a rule set).
- ``ExperimentOverride``: an assignment fixed for a profile (after a merge: the earlier exposure wins).
- ``Exposure``: a unit's first exposure to a variant, derived from the served log.
- ``ExperimentSnapshot``: results as computed at one time (the cumulative-lift chart is their series).
- ``BanditPolicy`` / ``BanditSnapshot``: Thompson sampling across strategies per context, and its
  arm shares over time.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

BUCKETS = 10_000


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    SHIPPED = "shipped"


class Metric(models.TextChoices):
    CTR = "ctr", "click-through per exposure"
    CONVERSION = "conversion", "orders per unit"
    REVENUE = "revenue", "revenue per unit"
    AOV = "aov", "average order value"


class Experiment(models.Model):
    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    hypothesis = models.TextField(blank=True, default="")
    placements = ArrayField(models.CharField(max_length=100), default=list)
    layer = models.SlugField(max_length=100, default="default")
    layer_start = models.PositiveIntegerField(default=0, help_text="first bucket of the layer (0-9999)")
    layer_end = models.PositiveIntegerField(default=BUCKETS, help_text="bucket after the last (1-10000)")
    salt = models.CharField(max_length=40, editable=False)
    target_segments = ArrayField(
        models.SlugField(max_length=200), default=list, blank=True, help_text="segment slugs; empty: everybody"
    )
    primary_metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.CONVERSION)
    guardrail_metrics = ArrayField(models.CharField(max_length=16, choices=Metric.choices), default=list, blank=True)
    attribution_hours = models.PositiveIntegerField(default=168, help_text="events this long after first exposure")
    cuped_days = models.PositiveIntegerField(default=14, help_text="pre-exposure window of the CUPED covariate")
    alpha = models.FloatField(default=0.05)
    sequential = models.BooleanField(default=True, help_text="always-valid intervals (safe to peek)")
    sequential_tuning = models.PositiveIntegerField(
        default=5000, help_text="N*: the units at which the always-valid interval is tightest (the units you expect)"
    )
    status = models.CharField(
        max_length=8, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT, db_index=True
    )
    allocation = models.JSONField(default=list, editable=False, help_text="[[first, after_last, variant], ...]")
    shipped_variant = models.CharField(max_length=100, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    exposures_until = models.DateTimeField(null=True, blank=True, editable=False)
    history = models.JSONField(default=list, blank=True, editable=False, help_text="who did what, when")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key


class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200, blank=True, default="")
    weight = models.PositiveIntegerField(help_text="share of the experiment's traffic, percent (the sum is 100)")
    is_control = models.BooleanField(default=False)
    personalised = models.BooleanField(default=True)
    model_version = models.PositiveIntegerField(null=True, blank=True, help_text="empty: the active model")
    rerank = models.BooleanField(default=True, help_text="context re-ranking")
    rule_set = models.CharField(max_length=100, blank=True, default="", help_text="empty: the shop's rules")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["experiment", "position", "pk"]
        constraints = [models.UniqueConstraint(fields=["experiment", "key"], name="variant_experiment_key_uniq")]

    def __str__(self) -> str:
        return f"{self.experiment.key}/{self.key}"


class ExperimentOverride(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="overrides")
    profile = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+")
    variant = models.CharField(max_length=100)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "profile"], name="experimentoverride_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.profile_id} -> {self.variant}"


class Exposure(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="exposures")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="+")
    profile = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+", db_index=False)
    first_exposed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "profile", "variant"], name="exposure_unit_variant_uniq"),
        ]
        indexes = [models.Index(fields=["profile"], name="exposure_profile")]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.profile_id} first exposed {self.first_exposed_at:%Y-%m-%d %H:%M}"


class ExperimentSnapshot(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="snapshots")
    computed_at = models.DateTimeField(db_index=True)
    results = models.JSONField(default=dict)

    class Meta:
        ordering = ["experiment", "computed_at"]

    def __str__(self) -> str:
        return f"results of {self.experiment_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class BanditStatus(models.TextChoices):
    RUNNING = "running"
    STOPPED = "stopped"


class BanditPolicy(models.Model):
    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    placements = ArrayField(models.CharField(max_length=100), default=list)
    arms = models.JSONField(
        default=list, help_text='[{"key": ..., "personalised": true, "model_version": null, "rerank": true, ...}]'
    )
    context_segments = ArrayField(
        models.SlugField(max_length=200), default=list, blank=True, help_text="segments that form contexts"
    )
    burn_in = models.PositiveIntegerField(default=100, help_text="answers per arm and context served uniformly")
    floor = models.FloatField(default=0.01, help_text="minimum share of each arm")
    window_hours = models.PositiveIntegerField(default=24, help_text="a click this soon after the answer counts")
    status = models.CharField(max_length=8, choices=BanditStatus.choices, default=BanditStatus.RUNNING)
    state = models.JSONField(default=dict, blank=True, help_text="per context: served, clicks, shares per arm")
    updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "bandit policies"

    def __str__(self) -> str:
        return self.key


class BanditSnapshot(models.Model):
    policy = models.ForeignKey(BanditPolicy, on_delete=models.CASCADE, related_name="snapshots")
    at = models.DateTimeField(db_index=True)
    shares = models.JSONField(default=dict, help_text="overall share per arm")
    contexts = models.JSONField(default=dict)

    class Meta:
        ordering = ["policy", "at"]

    def __str__(self) -> str:
        return f"shares of {self.policy_id} at {self.at:%Y-%m-%d %H:%M}"


class ExperimentUnit(models.Model):
    """One unit (live profile) of an experiment with its metrics in the attribution window, kept up
    incrementally (``experiments.units``): recomputed from the exposures, the served log and events
    whenever one of them changes for the unit, so a retried or replayed batch never counts twice.
    ``consented`` units (personalisation consent now) are the ones in ``ExperimentRollup``."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    # no database constraint: a recompute holding the experiment lock never waits for a profile lock
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="+")
    multi = models.BooleanField(default=False, help_text="saw several variants (reported, left out)")
    consented = models.BooleanField(default=True)
    first_exposed_at = models.DateTimeField()
    window_end = models.DateTimeField()
    e = models.IntegerField(default=0, help_text="answers served in the window")
    c = models.IntegerField(default=0, help_text="clicks on them")
    o = models.IntegerField(default=0, help_text="orders in the window")
    r = models.FloatField(default=0.0, help_text="revenue in the window")
    v = models.IntegerField(default=0, help_text="converted (0/1)")
    po = models.IntegerField(default=0, help_text="orders in the pre-exposure window (CUPED)")
    pr = models.FloatField(default=0.0, help_text="revenue in the pre-exposure window (CUPED)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "profile"], name="experimentunit_uniq"),
        ]
        indexes = [models.Index(fields=["profile"], name="experimentunit_profile")]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.profile_id}"


class ExperimentRollup(models.Model):
    """Per experiment, variant and multi-variant flag: the consenting units and the sums of every
    metric column, its square and the cross products (``selectors.COLUMNS``/``PAIRS`` order), moved
    by the difference each unit recompute makes. What a results call reads."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="+")
    multi = models.BooleanField()
    n = models.BigIntegerField(default=0)
    sums = ArrayField(models.FloatField(), default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "variant", "multi"], name="experimentrollup_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.variant_id}{' multi' if self.multi else ''} n={self.n}"
