"""Consent choices for the demo shop's customers and one sample privacy request (idempotent).

Most customers grant analytics and personalisation, about a third deny marketing, a few deny
analytics; choices are derived from each profile id, so a second run changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone
from tqdm import tqdm

from consent.models import ConsentRecord, DataSubjectRequest
from consent.requests import privacy_request_create
from consent.services import consent_records_bulk, purposes_ensure
from profiles.models import Identifier, Profile


def choices_for(profile_id: str) -> dict[str, bool]:
    """A stable, realistic answer for a profile: ~90% analytics, ~80% personalisation, ~65% marketing."""
    digest = hashlib.sha256(profile_id.encode()).digest()
    roll = [b / 255 for b in digest[:4]]
    return {
        "analytics": roll[0] >= 0.06,
        "personalisation": roll[1] >= 0.2,
        "marketing": roll[2] >= 0.35,
        "third_party_sharing": roll[3] >= 0.85,
    }


class Command(BaseCommand):
    help = "Record consent choices for the demo customers and create one sample privacy request."

    def handle(self, *args, **options):
        purposes_ensure()
        answered = set(ConsentRecord.objects.filter(source="demo").values_list("profile_id", flat=True).distinct())
        live = Profile.objects.filter(merged_into__isnull=True).exclude(pk__in=answered).values_list("pk", flat=True)
        ids = [str(pk) for pk in live]
        now = timezone.now()
        entries = []
        for n, pid in enumerate(tqdm(ids, desc="consent choices", unit="customer", disable=not ids)):
            at = now - timedelta(days=int(pid[:4], 16) % 50, minutes=n % 600)
            evidence = {"banner_id": "demo-banner-2025", "user_agent": "demo"}
            entries.append((pid, choices_for(pid), at, evidence))
            if len(entries) == 500:
                consent_records_bulk(entries=entries, source="demo")
                entries = []
        if entries:
            consent_records_bulk(entries=entries, source="demo")
        denied = {
            key: ConsentRecord.objects.filter(source="demo", purpose__key=key, granted=False).count()
            for key in ("analytics", "marketing")
        }
        self.stdout.write(
            f"consent: {len(ids)} customers answered now ({len(answered)} before); "
            f"denied analytics: {denied['analytics']}, denied marketing: {denied['marketing']}"
        )
        if DataSubjectRequest.objects.filter(requested_by="demo").exists():
            self.stdout.write("consent: the sample privacy request exists")
            return
        email = (
            Identifier.objects.filter(kind="email", profile__merged_into__isnull=True)
            .order_by("value")
            .values_list("value", flat=True)
            .first()
        )
        if email is None:
            self.stdout.write("consent: no customer with an e-mail; no sample request")
            return
        request = privacy_request_create(
            kind="access", channel="admin", requested_by="demo", identifier_kind="email", identifier_value=email
        )
        self.stdout.write(
            f"consent: sample access request {str(request.pk)[:8]} waits for verification in admin "
            "(Consent and privacy → Data subject requests)"
        )
