"""Catalog, model registry, the log of recommendations served, and business rules.

- ``Product``: the shop's catalog (upsert API, import command, or created from events).
- ``ModelVersion``: one trained model with its data window, metrics on a temporal holdout, the
  artifact (bytea: every web process loads it from PostgreSQL) and its lifecycle
  (training → candidate | active → retired; failed). At most one version is active.
- ``RecommendationServed``: each answer of the serving API (its id comes back on impression and
  click events, which is how models are joined to outcomes). It is "recommendations shown" for the
  privacy export.
- ``BusinessRule``: exclude or boost a category, for every placement or one.
"""

from __future__ import annotations

import uuid

from django.db import models


class ProductSource(models.TextChoices):
    EVENT = "event"
    API = "api"
    IMPORT = "import"


class Product(models.Model):
    sku = models.CharField(max_length=100, unique=True)
    title = models.CharField(max_length=500, blank=True, default="")
    description = models.TextField(blank=True, default="")
    category = models.CharField(
        max_length=500, blank=True, default="", help_text='category path, levels separated by " > "'
    )
    brand = models.CharField(max_length=200, blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    in_stock = models.BooleanField(default=True)
    first_seen_source = models.CharField(max_length=8, choices=ProductSource.choices, default=ProductSource.API)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.title}".strip()

    @property
    def top_category(self) -> str:
        return self.category.split(" > ")[0] if self.category else ""


class ModelStatus(models.TextChoices):
    TRAINING = "training"
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    FAILED = "failed"


class ModelVersion(models.Model):
    kind = models.CharField(max_length=32, default="hybrid")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.TRAINING, db_index=True)
    data_since = models.DateTimeField(null=True, blank=True, help_text="first interaction used")
    data_until = models.DateTimeField(null=True, blank=True, help_text="last interaction used")
    holdout_since = models.DateTimeField(null=True, blank=True, help_text="start of the temporal holdout")
    metrics = models.JSONField(default=dict, blank=True, help_text="this model on the holdout")
    baseline_metrics = models.JSONField(
        default=dict, blank=True, help_text="the model active at training time, on the same holdout"
    )
    decision = models.TextField(blank=True, default="", help_text="why it was or was not promoted")
    data_stats = models.JSONField(default=dict, blank=True, help_text="users, items, interactions")
    context_stats = models.JSONField(default=dict, blank=True, help_text="category shares by device and hour")
    artifact = models.BinaryField(null=True, blank=True, editable=False)
    artifact_bytes = models.PositiveBigIntegerField(default=0)
    people_shards = models.PositiveIntegerField(
        default=0, help_text="shards of the per-person part (ModelPeopleShard); 0: the artifact holds everything"
    )
    artifact_token = models.CharField(
        max_length=32, blank=True, default="", help_text="changes with every write of the artifact or its shards"
    )
    artifact_revision = models.PositiveIntegerField(
        default=1, help_text="bumped when the artifact is republished (e.g. after an erasure)"
    )
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=150, blank=True, default="schedule")
    promoted_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="active"), name="modelversion_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"model v{self.pk} ({self.kind}, {self.status})"

    def primary_metric(self, name: str) -> float | None:
        value = (self.metrics or {}).get(name)
        return float(value) if value is not None else None


class RecommendationServed(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    profile = models.ForeignKey(
        "profiles.Profile", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    placement = models.CharField(max_length=100, blank=True, default="")
    personalised = models.BooleanField(default=False)
    items = models.JSONField(default=list, help_text="skus in the order shown")
    # the strategy that chose this answer (recommendations.experiments.strategy.Strategy)
    experiment = models.CharField(max_length=100, blank=True, default="")
    variant = models.CharField(max_length=100, blank=True, default="")
    policy = models.CharField(max_length=100, blank=True, default="", help_text="bandit policy")
    arm_context = models.CharField(max_length=300, blank=True, default="", help_text="bandit context")
    propensity = models.FloatField(default=1.0, help_text="probability of this variant under its policy")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["profile", "created_at"], name="recserved_profile_time"),
            models.Index(
                fields=["experiment", "created_at"],
                name="recserved_experiment_time",
                condition=~models.Q(experiment=""),
            ),
            models.Index(fields=["policy", "created_at"], name="recserved_policy_time", condition=~models.Q(policy="")),
        ]
        verbose_name = "recommendation served"
        verbose_name_plural = "recommendations served"

    def __str__(self) -> str:
        return f"{self.id} ({self.placement or 'no placement'})"


class RuleKind(models.TextChoices):
    EXCLUDE = "exclude", "exclude the category"
    BOOST = "boost", "boost the category"


class BusinessRule(models.Model):
    kind = models.CharField(max_length=8, choices=RuleKind.choices)
    category = models.CharField(max_length=500, help_text="a category path or its top level; matches the prefix")
    factor = models.FloatField(default=1.5, help_text="boost: the score is multiplied by this")
    placement = models.CharField(max_length=100, blank=True, default="", help_text="empty: every placement")
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "category"]

    def __str__(self) -> str:
        where = f" on {self.placement}" if self.placement else ""
        return f"{self.kind} {self.category}{where}"


class PlacementKind(models.TextChoices):
    HOME = "home", "home: personalised for the shopper"
    PRODUCT = "product", "product page: similar and complementary to the product shown"
    CART = "cart", "cart: often bought together with the cart's items (cart items excluded)"
    POST_PURCHASE = "post_purchase", "after a purchase: what goes with what was just bought"


class Placement(models.Model):
    """A place on the storefront that asks for recommendations (``placement=<key>``). Its kind
    decides what is recommended; unknown or inactive keys are refused with the list of allowed ones."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    kind = models.CharField(max_length=16, choices=PlacementKind.choices)
    is_active = models.BooleanField(default=True)
    default_k = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty: RECS_DEFAULT_K")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} ({self.kind})"


class ModelPeopleShard(models.Model):
    """The per-person part of a stored model (``ModelVersion.artifact`` holds the item part): the
    rows of the people whose id falls in this shard (``engine.bundle.shard_of``), as an npz archive.
    Erasure rewrites only the shards of the people it erases."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="shards")
    shard = models.PositiveIntegerField()
    people = models.PositiveIntegerField(default=0)
    data = models.BinaryField(editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "shard"], name="recs_people_shard_unique")]
        ordering = ["version", "shard"]

    def __str__(self) -> str:
        return f"v{self.version_id} shard {self.shard} ({self.people} people)"


class PendingModelErasure(models.Model):
    """People erased whose rows are still in stored model artifacts: written by the erasure's
    transaction, worked off right after its commit (``model_erasures_apply``), then deleted."""

    profile_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{len(self.profile_ids)} people pending since {self.created_at:%Y-%m-%d %H:%M}"


from recommendations.experiments.models import (  # noqa: E402,F401  (models of this app, kept in their package)
    BanditPolicy,
    BanditSnapshot,
    Experiment,
    ExperimentOverride,
    ExperimentRollup,
    ExperimentSnapshot,
    ExperimentUnit,
    Exposure,
    Variant,
)
