"""The marketer's, the DPO's and the operator's journeys through the admin in real headless Chromium (Debian's
chromium + chromedriver), on a 1366 px screen, against pytest-django's live server and a real rq
worker. Each step writes a screenshot to docs/screenshots/ (shown in README). Skipped, saying why,
where no browser is installed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from consent.models import DataSubjectRequest
from consent.requests import privacy_request_create
from consent.services import consent_record, purposes_ensure
from profiles.models import Identifier
from profiles.schema import schema_rebuild
from tests.browser import chromium_options, chromium_start, needs_browser
from tests.conftest import REPO, worker_env
from tests.profiles.helpers import batch, writer

SCREENSHOTS = REPO / "docs" / "screenshots"

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements-dev.txt)")
pytestmark = [
    needs_browser,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def downloads(tmp_path) -> Path:
    return tmp_path


@pytest.fixture
def browser(downloads):
    options = chromium_options(width=1366, height=900)  # the laptop screen the tables must fit
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = chromium_start(options)
    yield driver
    driver.quit()


class Page:
    """Small helpers over the driver: wait for things, click, type, screenshot the whole page."""

    def __init__(self, driver, base: str) -> None:
        self.d, self.base = driver, base

    def get(self, path: str) -> None:
        self.d.get(self.base + path)

    def wait(self, css: str, text: str = "", timeout: float = 20):
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        def text_present(driver) -> bool:
            try:
                return ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)(driver)
            except WebDriverException as exc:
                # a form's answer replaced the page between the look-up and the read of its text
                if "does not belong to the document" in str(exc):
                    return False
                raise

        condition = text_present if text else ec.presence_of_element_located((By.CSS_SELECTOR, css))
        WebDriverWait(self.d, timeout).until(condition)
        return self.d.find_element(By.CSS_SELECTOR, css)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, css)

    def submit(self, button_css: str, timeout: float = 20) -> None:
        """Click a form's button and wait until its answer has replaced the page: a wait for an
        element the old page has too would otherwise find it there, and the next look-up could land
        on the page while it loads ('no such element')."""
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.find("html")
        self.find(button_css).click()
        WebDriverWait(self.d, timeout).until(ec.staleness_of(old))

    def type(self, css: str, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.wait(css)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(text, Keys.TAB)  # leaving the field fires its change event

    def fits(self) -> bool:
        return self.d.execute_script(
            "var box = document.querySelector('#changelist .results');"
            "return document.documentElement.scrollWidth <= window.innerWidth"
            " && (!box || box.scrollWidth <= box.clientWidth + 1);"
        )

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        height = self.d.execute_script("return Math.min(document.body.scrollHeight, 2400)")
        self.d.set_window_size(1366, max(900, height))
        self.d.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        self.d.set_window_size(1366, 900)


def signed_in_page(driver, live_server, django_user_model) -> Page:
    """A marketer (superuser) signed in to admin through the login form, on the dashboard."""
    django_user_model.objects.create_superuser("marketer", "m@example.com", "browser-pass")
    p = Page(driver, live_server.url)
    p.get("/admin/login/?next=/admin/")
    p.wait("#id_username").send_keys("marketer")
    p.find("#id_password").send_keys("browser-pass")
    p.find("input[type=submit]").click()
    p.wait("#cdp-dashboard")
    return p


@pytest.fixture
def page(browser, live_server, django_user_model):
    return signed_in_page(browser, live_server, django_user_model)


@pytest.fixture
def shop(write_key):
    """A few customers through real ingestion, and the schema registry they make."""
    purposes_ensure()
    client = writer(write_key)
    calls = [
        {
            "type": "identify",
            "userId": "u-ann",
            "traits": {"email": "ann@example.com", "name": "Ann Lee", "plan": "pro"},
        },
        {
            "type": "identify",
            "userId": "u-bob",
            "traits": {"email": "bob@example.com", "first_name": "Bob", "last_name": "Stone"},
        },
        {"type": "identify", "userId": "u-cy", "traits": {"email": "cy@example.com", "name": "Cy Twombly"}},
    ]
    for user, category in (("u-ann", "outdoor"), ("u-ann", "outdoor"), ("u-bob", "kitchen"), ("u-cy", "outdoor")):
        calls.append({"type": "track", "userId": user, "event": "Product Viewed", "properties": {"category": category}})
    calls.append({"type": "track", "userId": "u-ann", "event": "Order Completed", "properties": {"revenue": 120}})
    calls.append({"type": "track", "userId": "u-ann"})  # rejected: no event name
    response = batch(client, *calls)
    assert response.status_code == 200 and len(response.json()["errors"]) == 1
    schema_rebuild()
    ann, cy = (Identifier.objects.get(kind="user_id", value=u).profile for u in ("u-ann", "u-cy"))
    for person in (ann, cy):
        consent_record(profile_id=person.pk, choices={"marketing": True}, source="api")
    return {"ann": ann}


def test_marketer_finds_a_customer_by_name_builds_a_segment_previews_saves_and_exports(page, shop):
    # the home page is the dashboard, with the event rates and the rejected call
    page.get("/admin/")
    events = page.wait("#dash-events").text
    assert "8 in the last 24 h" in events and "1 rejected in the last hour" in events
    assert "3 live profiles" in page.find("#dash-profiles").text
    assert page.fits()
    page.shot("01-dashboard")

    # find a customer by name and read the whole profile
    page.get("/admin/profiles/profile/")
    page.type("#searchbar", "ann lee")
    page.find("#changelist-search input[type=submit]").click()
    page.wait("#result_list")
    assert page.fits()
    page.find("#result_list tbody tr th a").click()
    page.wait("#profile-consent")
    for section in (
        "profile-timeline",
        "profile-segments",
        "profile-consent",
        "profile-consent-ledger",
        "profile-recommendations",
        "profile-privacy-requests",
    ):
        page.find(f"#{section}")
    assert "Ann Lee" in page.find("#content-main").text
    page.shot("02-profile")

    # build a segment with the builder: a misspelt event is flagged with a suggestion
    page.get("/admin/segments/segment/add/")
    page.type("#id_name", "Outdoor browsers")
    page.wait(".sb-add-condition").click()
    page.type("input.sb-event-name", "Product Viewd")
    page.wait("#seg-warnings", "did you mean 'Product Viewed'?")
    page.shot("03-builder-suggestion")
    page.type("input.sb-event-name", "Product Viewed")
    page.wait(".sb-add-filter").click()
    page.type("input.sb-filter-prop", "category")
    page.type(".sb-filter input.sb-value", "outdoor")
    page.type("input.sb-window-n", "30")
    page.wait("#seg-status", "2 profiles match now")
    summary = page.wait("#seg-summary", "People who").text
    assert summary == "People who did “Product Viewed” where category is “outdoor” in the last 30 days."
    assert page.find("#seg-warnings").text == ""
    page.shot("04-builder-preview")

    # the JSON view holds the same definition
    page.find(".sb-tab-json").click()
    assert '"event": "Product Viewed"' in page.find("textarea.seg-definition").get_attribute("value")
    page.find(".sb-tab-builder").click()

    # save, then the segment page shows its members and the CSV export carries names
    page.find("input[name=_continue]").click()
    page.wait(".field-member_list")
    assert "2 members" in page.find(".field-member_list").text
    assert "People who did" in page.find(".field-summary").text
    page.shot("05-segment-saved")
    csv_text = page.d.execute_async_script(
        "var done = arguments[0]; fetch('/api/v1/segments/outdoor-browsers/members/export/?purpose=marketing', "
        "{credentials: 'same-origin'}).then(function (r) { return r.text(); }).then(done);"
    )
    assert "Ann Lee" in csv_text and "Cy Twombly" in csv_text and "Bob Stone" not in csv_text


def test_dpo_verifies_runs_and_downloads_an_access_request(page, shop, downloads):
    ann = shop["ann"]
    request = privacy_request_create(kind="access", channel="admin", requested_by="dpo", profile_id=str(ann.pk))
    late = privacy_request_create(
        kind="erasure", channel="admin", requested_by="dpo", identifier_kind="email", identifier_value="old@example.com"
    )
    DataSubjectRequest.objects.filter(pk=late.pk).update(
        due_at=late.received_at.replace(year=late.received_at.year - 1)
    )

    # the queue: days left and overdue, filterable
    page.get("/admin/consent/datasubjectrequest/?deadline=overdue")
    page.wait("#result_list")
    assert "overdue by" in page.find("#result_list").text and page.fits()
    page.get("/admin/consent/datasubjectrequest/")
    page.wait("#result_list")
    page.shot("06-dpo-queue")

    # the request page: Verify, then Run (a real rq worker), then Download
    page.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/")
    assert page.wait("#dsr-run").get_attribute("disabled") is not None  # verify first
    assert not page.d.find_elements("css selector", "input[name=_save]")
    page.find("#dsr-verify").click()
    page.wait(".messagelist", "Identity verified")
    page.find("#dsr-run").click()
    page.wait(".messagelist", "Queued")
    done = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "privacy", "--burst"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    page.wait(".dsr-state", "finished", timeout=30)  # the page followed the job by itself
    assert "Audit trail" in page.find("#content-main").text.title() or "AUDIT TRAIL" in page.find("#content-main").text
    page.shot("07-dpo-request-finished")
    label = page.find("#dsr-download").text
    page.find("#dsr-download").click()
    deadline = time.monotonic() + 20
    files: list[Path] = []
    size = -1
    while time.monotonic() < deadline:
        # Chromium may show the file under its final name before it has written it: wait until no
        # partial download is left and the size holds still
        files = [f for f in downloads.iterdir() if f.suffix == ".json"]
        partial = any(f.suffix == ".crdownload" for f in downloads.iterdir())
        if files and not partial and files[0].stat().st_size == size > 0:
            break
        size = files[0].stat().st_size if files else -1
        time.sleep(0.2)
    assert files, "the export was not downloaded"
    size = files[0].stat().st_size
    assert f"({size:,} bytes)" in label or f"({size / 1000:,.1f} kB)" in label  # the size shown is the download's


def test_live_event_stream_shows_accepted_and_rejected_calls(page, shop):
    page.get("/admin/profiles/event/live/")
    page.wait("#live-accepted")
    assert "Product Viewed" in page.find("#live-accepted").text
    assert "A track call needs the event name." in page.find("#live-rejected").text
    page.shot("08-live-events")


def _review_pairs() -> dict:
    """Three pending pairs of the review queue, as a matching run leaves them: Jo and Joanne (the
    matcher least sure), whose answer also settles the pair of Jo and Joanne's older profile; and the
    twins Sam and Tom Reed (less uncertain)."""
    from django.utils import timezone

    from profiles.models import MatchCandidate, Profile

    def person(first, last, email, merged_into=None):
        now = timezone.now()
        return Profile.objects.create(
            traits={"first_name": first, "last_name": last, "email": email, "city": "Leeds"},
            first_seen_at=now,
            last_seen_at=now,
            merged_into=merged_into,
        )

    def pair(x, y, uncertainty, pattern):
        low, high = sorted([x.pk, y.pk])
        return MatchCandidate.objects.create(
            profile_a_id=low,
            profile_b_id=high,
            reason="fuzzy",
            score=0.7,
            evidence={"pattern": pattern, "uncertainty": uncertainty, "record_pairs": 1},
        )

    jo, joanne = person("Jo", "Marsh", "jo.marsh@example.com"), person("Joanne", "Marsh", "joanne@example.com")
    joanne_old = person("Joanne", "Marsh", "jmarsh@example.com", merged_into=joanne)
    sam, tom = person("Sam", "Reed", "reeds@example.com"), person("Tom", "Reed", "reeds@example.com")
    return {
        "jo": pair(jo, joanne, 0.99, "2.3.-.4.-.-"),
        "jo_old": pair(jo, joanne_old, 0.97, "2.3.-.4.-.-"),
        "twins": pair(sam, tom, 0.8, "0.3.4.4.-.-"),
    }


def test_reviewer_answers_the_queue_one_pair_at_a_time_until_it_is_empty(page, shop):
    from profiles.models import CandidateStatus, MatchCandidate

    pairs = _review_pairs()
    page.get("/admin/")
    page.d.find_element("link text", "Match candidates").click()
    page.wait("#result_list")
    rows = page.d.find_elements("css selector", "#result_list tbody tr")
    assert f"{pairs['jo'].pk}" in rows[0].text  # the most uncertain pair first
    assert page.fits()
    page.find("#review-start").click()

    # the most uncertain pair, side by side, with the answer buttons above it
    page.wait("#review-decision", "3 pair(s) pending")
    comparison = page.find(".candidate-comparison").text
    assert "Jo" in comparison and "Joanne" in comparison and "different" in comparison
    page.shot("09-review-pair")
    page.find("#review-approve").click()

    # the answer merged them and settled the similar pair; the twins come next
    page.wait(".messagelist", f"Approved and merged pair #{pairs['jo'].pk}; 1 similar pending pair(s) settled")
    page.wait("#review-decision", "1 pair(s) pending")
    assert "Sam" in page.find(".candidate-comparison").text
    page.find("#review-skip").click()
    page.wait(".messagelist", "You skipped the 1 pending pair(s) left.")

    # back to it later: different people, and the queue is done
    page.find("#review-start").click()
    page.wait("#review-decision", "1 pair(s) pending").find_element("css selector", "#review-reject").click()
    page.wait(".messagelist", "The review queue is empty: every pair is answered.")
    page.shot("10-review-queue-done")
    statuses = dict(MatchCandidate.objects.values_list("pk", "status"))
    assert statuses == {
        pairs["jo"].pk: CandidateStatus.APPROVED,
        pairs["jo_old"].pk: CandidateStatus.APPROVED,
        pairs["twins"].pk: CandidateStatus.REJECTED,
    }


def test_every_change_list_fits_a_1366_px_screen(page, shop):
    from django.contrib import admin

    cdp_apps = {"cdp", "profiles", "consent", "segments", "recommendations"}
    crowded = []
    for model in admin.site._registry:
        opts = model._meta
        if opts.app_label not in cdp_apps:
            continue
        page.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        page.wait("#content-main")
        if not page.fits():
            crowded.append(opts.label)
    assert crowded == [], f"these lists do not fit 1366 px: {crowded}"


def test_builder_sums_a_number_property_and_combines_groups(page, shop):
    page.get("/admin/segments/segment/add/")
    page.wait(".sb-add-condition").click()
    page.type("input.sb-event-name", "Order Completed")
    from selenium.webdriver.support.ui import Select

    Select(page.wait("select.sb-sum-op")).select_by_value(">=")
    page.type("input.sb-sum-value", "100")
    page.type("input.sb-sum-prop", "revenue")
    page.wait(".sb-add-group").click()  # an "any of" group inside
    Select(page.find(".sb-group .sb-group .sb-type")).select_by_value("consent")
    # the summary of the definition before the consent group also names the total revenue: wait for
    # the last one (the live check runs 0.5 s after the last change)
    page.wait("#seg-summary", "granted analytics consent")
    assert page.find("#seg-summary").text == (
        "People who did “Order Completed” with a total revenue that is at least 100 and granted analytics consent."
    )
    page.wait("#seg-status", "1 profiles match now")


@pytest.mark.intake_async
def test_operator_watches_the_intake_log_drain_and_sends_a_fixed_call_back(page, write_key, settings, monkeypatch):
    import json

    from profiles.models import Event, IntakeEvent, IntakePoison
    from profiles.tracking import intake
    from profiles.tracking.validate import clean_event
    from profiles.tracking.worker import intake_drain

    settings.CDP_INTAKE_PARTITIONS = 4
    monkeypatch.setattr(intake, "intake_wake", lambda: None)  # the test is the stitch worker here
    intake_drain()  # workers that ran before: the partitions' rows exist
    # given calls waiting in the intake log: two customers' and one no worker can stitch (its stored
    # time is not a time)
    client = writer(write_key)
    batch(
        client,
        {"type": "track", "userId": "u-ann", "event": "Product Viewed", "messageId": "m-ann"},
        {"type": "track", "userId": "u-bob", "event": "Order Completed", "messageId": "m-bob"},
    )
    waiting = IntakeEvent.objects.first()
    bad = json.loads(
        intake.event_payload(
            clean_event(
                {"type": "track", "userId": "u-cy", "event": "Product Viewed", "messageId": "m-cy"},
                received_at=waiting.received_at,
            )
        )
    )
    IntakeEvent.objects.create(
        source=waiting.source,
        message_id="m-cy",
        partition=1,
        payload=bad | {"occurred_at": "yesterday-ish"},
        received_at=waiting.received_at,
    )

    # when the operator opens the intake log's partitions
    page.get("/admin/profiles/intakepartition/")
    page.wait(".messagelist", "Intake log: 3 calls waiting")
    assert page.d.find_elements("css selector", "#result_list [data-cdp-running]")
    page.shot("11-intake-waiting")
    page.d.execute_script("window.cdpNotReloaded = true")

    # and the stitch workers drain the log meanwhile
    intake_drain()

    # then the table follows by itself, without a reload, until no partition has calls waiting
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(page.d, 20).until(lambda d: not d.find_elements("css selector", "#result_list [data-cdp-running]"))
    assert page.d.execute_script("return window.cdpNotReloaded === true")

    # and the call no worker could stitch is set aside, with its error, in Intake poison
    page.get("/admin/profiles/intakepoison/")
    row = page.wait("#result_list tbody tr", "m-cy")
    assert "ValueError" in row.text and "yesterday-ish" in row.text
    page.shot("12-intake-poison")

    # when the cause is fixed and the operator sends the call back with the list's action
    IntakePoison.objects.filter(message_id="m-cy").update(payload=bad)
    page.find("#result_list input.action-select").click()
    from selenium.webdriver.support.select import Select

    Select(page.find("select[name=action]")).select_by_value("send_back")
    page.submit("button[name=index]")
    page.wait(".messagelist", "1 call(s) sent back to the intake log")

    # then it is in the log again, and the next drain stores it
    assert list(IntakeEvent.objects.values_list("message_id", flat=True)) == ["m-cy"]
    intake_drain()
    assert Event.objects.filter(message_id__in=["m-ann", "m-bob", "m-cy"]).count() == 3
    assert not IntakePoison.objects.exists()
