from __future__ import annotations

from django.db import models


class ApiKey(models.Model):
    """A secret server key for the read and admin APIs (/api/v1/*). Stored hashed."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, editable=False, help_text="First characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "secret API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class JobLease(models.Model):
    """The lease of one long run (matching, clustering, model refresh, privacy request): who runs
    it, until when the lease holds, how many attempts it had. Kept by ``cdp.lifecycle``."""

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        REQUEUED = "requeued", "requeued (worker lost)"
        ABANDONED = "abandoned", "failed (worker lost too often)"

    kind = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    token = models.CharField(max_length=32, help_text="the current attempt; a lost attempt cannot finish")
    worker = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    history = models.JSONField(default=list, blank=True, help_text="one entry per ended attempt")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "object_id"], name="joblease_one_per_run")]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id} ({self.state}, attempt {self.attempts})"
