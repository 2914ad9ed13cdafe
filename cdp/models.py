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
