"""The demo storefront (`make demo`'s shop on a second origin) in headless Chromium: a visitor
answers the banner, gets recommendations, logs in (identify), buys (Order Completed), and the
admin shows that profile with its order."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from cdp.demo.storefront import serve
from consent.selectors import consent_granted
from profiles.models import Event, Identifier

from .conftest import browser_required, wait_until

pytestmark = browser_required


@pytest.fixture
def demo_shop(live_server, trained):
    server = serve(port=0, cdp=live_server.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_a_visitor_browses_answers_the_banner_logs_in_and_buys(browser, demo_shop, sdk):
    from selenium.webdriver.common.by import By

    browser.get(f"{demo_shop}/sdk/{sdk}")  # the header's switch; sets the cookie, back to home

    def widget_ready(element_id: str):
        return wait_until(
            lambda: (
                browser.execute_script(f"return document.getElementById('{element_id}').dataset.state")
                in ("ready", "error")
            ),
            browser=browser,
            what=f"widget {element_id}",
        )

    widget_ready("recs-home")
    assert browser.find_element(By.ID, "recs-home").get_attribute("data-state") == "ready"
    assert browser.find_elements(By.CSS_SELECTOR, "#recs-home .cdp-rec")
    browser.find_element(By.ID, "cdp-consent-accept").click()
    wait_until(lambda: not browser.find_elements(By.ID, "cdp-consent-banner"), browser=browser, what="banner")

    # log in: the backend signs the user token, the page identifies the shopper
    browser.find_element(By.CSS_SELECTOR, "#login input[name=email]").send_keys("new.shopper@example.com")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    email = wait_until(
        lambda: Identifier.objects.filter(kind="email", value="new.shopper@example.com").first(),
        browser=browser,
        what="the identify call",
    )
    profile_id = email.profile_id
    assert Identifier.objects.filter(kind="user_id", profile_id=profile_id).exists()
    assert consent_granted(profile_id=profile_id, purpose="marketing") is True  # the banner's answer followed

    # a product page, signed in: recommendations with the user token; buy
    browser.get(f"{demo_shop}/product/BOO-1")
    widget_ready("recs-product")
    assert browser.find_element(By.ID, "recs-product").get_attribute("data-state") == "ready"
    browser.find_element(By.ID, "buy").click()
    order = wait_until(
        lambda: Event.objects.filter(name="Order Completed", profile_id=profile_id).first(),
        browser=browser,
        what="Order Completed",
    )
    assert order.properties["products"][0]["product_id"] == "BOO-1"

    # the admin shows that profile with its order
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    page = admin.get(f"/admin/profiles/profile/{profile_id}/change/").content.decode()
    assert "new.shopper@example.com" in page
    assert "Order Completed" in page
