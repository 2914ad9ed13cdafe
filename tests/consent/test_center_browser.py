"""The privacy center in real headless Chromium (Debian's chromium + chromedriver), on a phone-sized
window, against pytest-django's live server. Skipped, saying why, where no browser is installed."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from consent.selectors import consent_granted
from profiles.models import Identifier
from tests.browser import chromium_options, chromium_start, needs_browser
from tests.profiles.helpers import call, writer

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements-dev.txt)")
pytestmark = [
    needs_browser,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser():
    driver = chromium_start(chromium_options(width=390, height=844))  # a phone
    yield driver
    driver.quit()


def test_customer_signs_in_by_email_and_changes_consent_on_a_phone(browser, live_server, write_key):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(css: str, text: str = ""):
        WebDriverWait(browser, 20).until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
            if text
            else ec.presence_of_element_located((By.CSS_SELECTOR, css))
        )
        return browser.find_element(By.CSS_SELECTOR, css)

    call(writer(write_key), "identify", userId="u-browser", traits={"email": "dora@example.com"})
    profile_id = Identifier.objects.get(kind="email", value="dora@example.com").profile_id

    browser.get(f"{live_server.url}/privacy/")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.find_element(By.ID, "id_email").send_keys("dora@example.com")
    browser.find_element(By.ID, "send-link").click()
    assert "Check your e-mail" in wait_for("#sent").text

    (link,) = re.findall(r"(http://\S+/privacy/verify/\S+/)", mail.outbox[-1].body)
    browser.get(link)
    browser.find_element(By.ID, "continue").click()
    wait_for("#consent-form")
    assert browser.current_url.endswith("/privacy/me/")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    marketing = browser.find_element(By.ID, "purpose_marketing")
    assert not marketing.is_selected()
    marketing.click()
    browser.find_element(By.ID, "save-consent").click()
    wait_for(".messages", "Your choices are saved.")
    assert browser.find_element(By.ID, "purpose_marketing").is_selected()
    assert consent_granted(profile_id=profile_id, purpose="marketing") is True

    # the link was used: opening it again is refused
    browser.get(link)
    assert "This link cannot be used" in wait_for("#invalid").text
