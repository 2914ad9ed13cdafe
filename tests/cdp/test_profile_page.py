"""The whole profile on one page: segments and their history, consent now and its ledger,
recommendations served and clicked, experiments (when they exist), privacy requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import DataSubjectRequest
from consent.services import consent_record
from profiles.admin.panels import PanelContent, _panels, register_profile_panel
from profiles.models import Identifier
from recommendations.models import RecommendationServed
from segments import services as segment_services
from tests.profiles.helpers import call, writer

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann(write_key):
    client = writer(write_key)
    assert (
        call(client, "identify", userId="u-ann", traits={"email": "ann@example.com", "name": "Ann Lee"}).status_code
        == 200
    )
    profile = Identifier.objects.get(kind="user_id", value="u-ann").profile
    served = RecommendationServed.objects.create(
        profile=profile, placement="home", personalised=True, items=["SKU-1", "SKU-2"], created_at=timezone.now()
    )
    assert (
        call(
            client,
            "track",
            userId="u-ann",
            event="Recommendation Clicked",
            properties={"recommendation_id": str(served.pk)},
        ).status_code
        == 200
    )
    return profile


def section(html: str, key: str) -> str:
    start = html.index(f'id="profile-{key}"')
    return html[start : html.index("</div>", start)]


def test_profile_page_shows_segments_consent_recommendations_and_privacy_requests(admin_client, ann):
    segment_services.segment_create(
        slug="named", name="Named people", definition={"trait": "name", "op": "exists", "value": True}, refresh="now"
    )
    consent_record(profile_id=str(ann.pk), choices={"marketing": True}, source="admin")
    DataSubjectRequest.objects.create(
        kind="access",
        channel="admin",
        profile=ann,
        received_at=timezone.now(),
        due_at=timezone.now() + timedelta(days=30),
    )

    html = admin_client.get(f"/admin/profiles/profile/{ann.pk}/change/").content.decode()

    segments = section(html, "segments")
    assert "Named people" in segments and "member" in segments
    consent = section(html, "consent")
    assert "marketing" in consent and "granted" in consent
    assert "marketing" in section(html, "consent-ledger")
    recs = section(html, "recommendations")
    assert "SKU-1, SKU-2" in recs and '<b class="cdp-ok">yes</b>' in recs
    assert "access" in section(html, "privacy-requests")
    assert "Experiments" in section(html, "experiments")
    assert 'href="#profile-consent-ledger"' in html  # the page's own table of contents


def test_a_failing_panel_shows_its_error_and_the_page_still_works(admin_client, ann):
    def broken(*, request, profile) -> PanelContent:
        raise RuntimeError("boom")

    register_profile_panel(key="broken", title="Broken", order=99, render=broken)
    try:
        response = admin_client.get(f"/admin/profiles/profile/{ann.pk}/change/")
    finally:
        _panels.pop("broken")
    assert response.status_code == 200
    assert "This panel could not be shown: RuntimeError." in response.content.decode()
