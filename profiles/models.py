from __future__ import annotations

from django.db import models


class Source(models.Model):
    """Where events come from (a storefront, a backend, an import); its write key sends events."""

    name = models.CharField(max_length=200, unique=True)
    write_key_prefix = models.CharField(max_length=16, editable=False)
    write_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
