"""A marketer's journey through the experiments admin in real headless Chromium: create with a preview
of the split, start, the results page with its chart and SRM banner, stop and ship, and a bandit
with its arm-shares page. Screenshots go to docs/screenshots/experiment_*.png."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.browser import needs_browser

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements-dev.txt)")
pytestmark = [needs_browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(live_server, django_user_model):
    from consent.services import purposes_ensure
    from tests.browser import chromium_options, chromium_start
    from tests.cdp.test_admin_browser import signed_in_page

    purposes_ensure()
    driver = chromium_start(chromium_options(width=1366, height=900))
    yield signed_in_page(driver, live_server, django_user_model)
    driver.quit()


def _traffic(experiment, *, a: int, b: int) -> None:
    """Consenting shoppers served by the experiment (a skewed split: the SRM banner must show), and
    orders from some of them after their first answer."""
    from consent.services import consent_records_bulk
    from profiles.models import Event, Profile, Source
    from profiles.services import source_create
    from recommendations.models import RecommendationServed

    now = timezone.now()
    source = Source.objects.filter(name="shop").first() or source_create(name="shop")[0]
    people = [Profile.objects.create(first_seen_at=now, last_seen_at=now) for _ in range(a + b)]
    consent_records_bulk(entries=[(str(p.pk), {"personalisation": True}, now, {}) for p in people], source="api")
    RecommendationServed.objects.bulk_create(
        RecommendationServed(
            profile=p,
            placement="home",
            experiment=experiment.key,
            variant="control" if n < a else "treatment",
            items=[],
            created_at=now,
        )
        for n, p in enumerate(people)
    )
    Event.objects.bulk_create(
        Event(
            source=source,
            message_id=f"order-{p.pk}",
            profile=p,
            type="track",
            name="Order Completed",
            properties={"revenue": 30 + n % 7},
            occurred_at=now + timedelta(seconds=1),
            received_at=now,
        )
        for n, p in enumerate(people)
        if n % (4 if n < a else 3) == 0
    )


def test_a_marketer_creates_runs_reads_and_ships_an_experiment_and_watches_a_bandit(page):
    from recommendations.experiments.models import BanditPolicy, Experiment

    # create: a split that does not sum is refused with the reason, the preview draws the split
    page.get("/admin/recommendations/experiment/add/")
    page.type("#id_key", "home-personal")
    page.type("#id_name", "Personalised vs popular on home")
    page.type("#id_hypothesis", "Personalised lists earn more orders per shopper than the popular list.")
    page.type("#id_placements", "home")
    page.type("#id_variants-1-weight", "40")
    page.find("input[name=_preview]").click()
    page.wait("#preview", "must sum to 100")
    page.type("#id_variants-1-weight", "50")
    page.find("input[name=_preview]").click()
    page.wait("#preview svg")
    assert "50 %" in page.find("#preview").text
    page.shot("experiment_1_preview")
    page.find("input[name=_save]").click()
    page.wait("#results-table")
    assert "draft" in page.find("#content").text

    # start it, then shoppers arrive (skewed on purpose) and two looks are recorded
    page.find("form[action$='/start/'] button").click()
    page.wait("#content", "Status: running")
    experiment = Experiment.objects.get(key="home-personal")
    _traffic(experiment, a=260, b=140)
    for _ in range(2):
        page.submit("form[action$='/snapshot/'] button")
        page.wait("#results-table")
    page.wait("#srm-banner", "Sample-ratio mismatch")
    assert "control 260" in page.find("#content").text
    assert page.d.find_elements("css selector", "#lift-chart svg")
    assert page.fits()
    page.shot("experiment_2_results_srm")

    # stop, then ship the treatment
    page.find("form[action$='/stop/'] button").click()
    page.wait("#content", "Status: stopped")
    from selenium.webdriver.support.ui import Select

    Select(page.find("form[action$='/ship/'] select")).select_by_value("treatment")
    page.find("form[action$='/ship/'] button").click()
    page.wait("#content", "shipped: treatment")
    assert not page.d.find_elements("css selector", "form[action$='/stop/']")
    page.shot("experiment_3_shipped")

    # a bandit: bad arms are refused with the reason and nothing is saved; good ones are
    page.get("/admin/recommendations/banditpolicy/add/")
    page.type("#id_key", "cart-arms")
    page.type("#id_placements", "cart")
    page.type("#id_arms", '[{"key": "only"}]')
    page.find("input[name=_save]").click()
    page.wait(".errorlist", "at least two arms")
    assert not BanditPolicy.objects.filter(key="cart-arms").exists()
    page.type("#id_arms", '[{"key": "personal"}, {"key": "popular", "personalised": false}]')
    page.find("input[name=_save]").click()
    page.wait("#content", "cart-arms")
    policy = BanditPolicy.objects.get(key="cart-arms")
    assert [a["key"] for a in policy.arms] == ["personal", "popular"]
    page.get(f"/admin/recommendations/banditpolicy/{policy.pk}/shares/")
    page.wait("#content", "No answers served yet")
    _bandit_traffic(policy)
    page.get(f"/admin/recommendations/banditpolicy/{policy.pk}/shares/")
    page.wait("#shares-chart polyline")
    page.wait("#ope", "doubly robust")
    assert page.fits()
    page.shot("experiment_4_bandit")


def _bandit_traffic(policy) -> None:
    """Logged answers of both arms with their propensities, clicks on the personal arm's, and three
    updates (as beat runs them)."""
    from profiles.models import Event, Profile, Source
    from recommendations.experiments.bandits import bandit_update
    from recommendations.models import RecommendationServed

    now = timezone.now()
    source = Source.objects.get(name="shop")
    person = Profile.objects.create(first_seen_at=now, last_seen_at=now)
    for update in range(3):
        answers = RecommendationServed.objects.bulk_create(
            RecommendationServed(
                profile=person,
                placement="cart",
                policy=policy.key,
                arm_context="-|cart|desktop",
                variant="personal" if n % 2 else "popular",
                propensity=0.5,
                items=[],
                created_at=now - timedelta(hours=3 - update),
            )
            for n in range(120)
        )
        Event.objects.bulk_create(
            Event(
                source=source,
                message_id=f"click-{a.pk}",
                profile=person,
                type="track",
                name="Product Clicked",
                properties={"recommendation_id": str(a.pk)},
                occurred_at=a.created_at + timedelta(minutes=1),
                received_at=now,
            )
            for n, a in enumerate(answers)
            if a.variant == "personal" and n % 3 == 1
        )
        bandit_update(policy_id=policy.pk, seed=update)
