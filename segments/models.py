"""Segments: rule segments (condition trees), cluster segments (proposed by clustering runs),
membership with history, size over time, and the clustering runs themselves."""

from __future__ import annotations

import json

from django.db import models


class SegmentKind(models.TextChoices):
    RULE = "rule"
    CLUSTER = "cluster"


class SegmentStatus(models.TextChoices):
    ACTIVE = "active"
    PROPOSED = "proposed"
    DISMISSED = "dismissed"


class Segment(models.Model):
    """A named group of live profiles: by rule (``definition``) or found by a clustering run."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=8, choices=SegmentKind.choices, default=SegmentKind.RULE)
    status = models.CharField(max_length=10, choices=SegmentStatus.choices, default=SegmentStatus.ACTIVE, db_index=True)
    definition = models.JSONField(
        null=True, blank=True, help_text="condition tree of a rule segment (docs/segments.md)"
    )
    definition_text = models.TextField(
        blank=True,
        default="",
        help_text="the definition as it was typed (jsonb reorders keys); shown when it still parses to definition",
    )
    clustering_run = models.ForeignKey(
        "segments.ClusteringRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="segments"
    )
    cluster_label = models.IntegerField(null=True, blank=True)
    cluster_profile = models.JSONField(default=dict, blank=True, help_text="cluster centre in readable units")
    size = models.PositiveIntegerField(default=0)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def typed_definition(self):
        """``definition`` with keys in the order they were typed, when the stored text still matches."""
        if self.definition_text:
            try:
                typed = json.loads(self.definition_text)
            except ValueError:
                return self.definition
            if typed == self.definition:
                return typed
        return self.definition


class SegmentMembership(models.Model):
    """A profile's stay in a segment: open while ``exited_at`` is null; closed stays are history."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    profile = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="segment_memberships")
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "profile"],
                condition=models.Q(exited_at__isnull=True),
                name="segment_membership_open_uniq",
            )
        ]
        indexes = [
            models.Index(
                fields=["profile", "segment"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_profile_open",
            ),
            models.Index(fields=["segment", "entered_at"], name="membership_segment_entered"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.segment_id}"


class SegmentSize(models.Model):
    """A sample of a segment's size (history for the chart)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="sizes")
    at = models.DateTimeField()
    size = models.PositiveIntegerField()

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["segment", "at"], name="segmentsize_segment_at")]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.size} at {self.at:%Y-%m-%d %H:%M}"


class ClusteringRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ClusteringRun(models.Model):
    """One clustering job (segments/clustering/): its parameters, progress, choice and report."""

    status = models.CharField(
        max_length=8, choices=ClusteringRunStatus.choices, default=ClusteringRunStatus.QUEUED, db_index=True
    )
    requested_by = models.CharField(max_length=150, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=300, blank=True, default="")
    population = models.PositiveIntegerField(default=0)
    chosen = models.JSONField(default=dict, blank=True)
    report = models.JSONField(default=dict, blank=True)
    model = models.BinaryField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"clustering run {self.pk} ({self.status})"
