"""Rebuild the derived consent state from the ledger (repair after a restore or a missed merge hook)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from consent.services import consent_state_rebuild


class Command(BaseCommand):
    help = "Recompute every live profile's current consent state from the append-only ledger."

    def handle(self, *args, **options):
        rows = consent_state_rebuild()
        self.stdout.write(f"consent state rebuilt: {rows} profile x purpose rows")
