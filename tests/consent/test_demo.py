"""demo_consent: realistic choices for every demo customer, a sample request, idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from consent.models import ConsentRecord, DataSubjectRequest
from consent.selectors import consent_granted
from profiles.models import Identifier, Profile

pytestmark = pytest.mark.django_db


def test_demo_consent_is_realistic_and_idempotent():
    now = timezone.now()
    profiles = [Profile.objects.create(first_seen_at=now, last_seen_at=now) for _ in range(200)]
    Identifier.objects.create(kind="email", value="demo1@example.com", profile=profiles[0], last_seen_at=now)
    call_command("demo_consent", stdout=StringIO())
    assert ConsentRecord.objects.filter(source="demo").count() == 200 * 4
    granted = {
        purpose: sum(consent_granted(profile_id=p.pk, purpose=purpose) for p in profiles)
        for purpose in ("analytics", "personalisation", "marketing")
    }
    assert 170 <= granted["analytics"] < 200  # a few deny analytics
    assert 130 <= granted["personalisation"] <= 185  # most grant personalisation
    assert 100 <= granted["marketing"] <= 160  # a share deny marketing
    request = DataSubjectRequest.objects.get()
    assert request.kind == "access" and request.status == "received" and request.profile_id == profiles[0].pk
    out = StringIO()
    call_command("demo_consent", stdout=out)
    assert ConsentRecord.objects.filter(source="demo").count() == 800
    assert DataSubjectRequest.objects.count() == 1
    assert "0 customers answered now (200 before)" in out.getvalue()
