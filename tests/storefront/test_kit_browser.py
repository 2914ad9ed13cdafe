"""The storefront kit (cdp/static/storefront/cdp-storefront.js) on a shop page of another origin, with
each SDK, in headless Chromium: the widget renders the visitor's recommendations into its placement
and reports impressions and clicks with the recommendation id through the page's SDK; the consent
banner records the answer through /v1/consent and sets the SDK's consent context; a user id without
a valid user token gets no recommendations."""

from __future__ import annotations

import json
import time

import pytest

from consent.selectors import consent_granted
from profiles import services
from profiles.models import Event, Identifier
from profiles.storefront import user_token_make

from .conftest import browser_required, wait_until

pytestmark = browser_required


def sdk_loader(sdk: str, cdp: str, write_key: str) -> str:
    if sdk == "segment":
        return f"""<script src="{cdp}/static/storefront/vendor/analytics-next/index.js"></script>
<script>
window.analytics = AnalyticsNext.AnalyticsBrowser.load(
  {{writeKey: {json.dumps(write_key)}, cdnURL: {json.dumps(cdp)}}});
</script>"""
    return f"""<script src="{cdp}/static/storefront/vendor/rudderstack/index.js"></script>
<script>
window.rudderanalytics = new rudderanalytics.RudderAnalytics();
// consentManagement: how RudderStack's SDK takes a custom banner's answers (rudderanalytics.consent)
window.rudderanalytics.load({json.dumps(write_key)}, {json.dumps(cdp)},
  {{configUrl: {json.dumps(cdp)}, consentManagement: {{enabled: true, provider: "custom"}}}});
</script>"""


def kit_page(sdk: str, cdp: str, write_key: str, *, user_id: str = "", user_token: str = "") -> str:
    user = f'data-user-id="{user_id}" data-user-token="{user_token}"' if user_id else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<h1>Our shop</h1>
<div id="recs" data-placement="home" data-k="3" data-title="For you"></div>
{sdk_loader(sdk, cdp, write_key)}
<script src="{cdp}/static/storefront/cdp-storefront.js" data-cdp-host="{cdp}" data-write-key="{write_key}"
  data-banner="true" {user}></script>
</body></html>"""


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_widget_and_banner_on_a_shop_page(browser, live_server, shop_site, trained, sdk):
    from selenium.webdriver.common.by import By

    source, write_key = services.source_create(name="web", allowed_origins=[shop_site.origin])
    token = user_token_make(secret=source.user_token_secret, user_id="u-0", expires_at=int(time.time()) + 600)
    browser.get(shop_site.page("/", kit_page(sdk, live_server.url, write_key, user_id="u-0", user_token=token)))

    # the widget: the signed-in shopper's recommendations, rendered into the placement
    wait_until(
        lambda: browser.execute_script("return document.getElementById('recs').dataset.state") in ("ready", "error"),
        browser=browser,
        what="the widget",
    )
    recs = browser.find_element(By.ID, "recs")
    assert recs.get_attribute("data-state") == "ready", recs.get_attribute("data-error")
    items = recs.find_elements(By.CSS_SELECTOR, ".cdp-rec")
    assert len(items) == 3
    recommendation_id = recs.get_attribute("data-recommendation-id")
    assert recommendation_id

    # its impression reaches cdp through the page's SDK, with the recommendation id
    def reported(name):
        return Event.objects.filter(source=source, name=name, properties__recommendation_id=recommendation_id).first()

    viewed = wait_until(lambda: reported("Recommendation Viewed"), browser=browser, what="Recommendation Viewed")
    assert viewed.properties["placement"] == "home"
    assert len(viewed.properties["products"]) == 3

    # the banner: choose personalisation, not marketing; recorded in the ledger for this shopper
    banner = browser.find_element(By.ID, "cdp-consent-banner")
    assert banner.is_displayed()
    assert not browser.find_element(By.ID, "cdp-consent-marketing").is_selected()
    browser.find_element(By.ID, "cdp-consent-personalisation").click()
    browser.find_element(By.ID, "cdp-consent-save").click()
    wait_until(lambda: not browser.find_elements(By.ID, "cdp-consent-banner"), browser=browser, what="banner saved")
    person = Identifier.objects.get(kind="user_id", value="u-0").profile_id
    assert consent_granted(profile_id=person, purpose="marketing") is False
    assert consent_granted(profile_id=person, purpose="personalisation") is True

    # a click: Product Clicked with the same recommendation id and the position; then the SDK's events
    # carry the consent answer (Segment: context.consent; RudderStack: context.consentManagement)
    first_sku = items[0].get_attribute("data-sku")
    items[0].find_element(By.TAG_NAME, "a").click()
    clicked = wait_until(lambda: reported("Product Clicked"), browser=browser, what="Product Clicked")
    assert clicked.properties["product_id"] == first_sku
    assert clicked.properties["position"] == 1
    if sdk == "segment":
        assert clicked.context["consent"]["categoryPreferences"]["marketing"] is False
    else:
        assert "marketing" in clicked.context["consentManagement"]["deniedConsentIds"]

    # the answer is remembered: no banner on the next page
    browser.get(shop_site.page("/next", kit_page(sdk, live_server.url, write_key)))
    wait_until(
        lambda: browser.execute_script("return document.getElementById('recs').dataset.state") == "ready",
        browser=browser,
        what="the widget on the next page",
    )
    assert not browser.find_elements(By.ID, "cdp-consent-banner")


def test_a_user_id_with_a_bad_token_gets_a_clear_refusal_and_no_recommendations(
    browser, live_server, shop_site, trained
):
    _, write_key = services.source_create(name="web", allowed_origins=[shop_site.origin])
    browser.get(
        shop_site.page("/", kit_page("segment", live_server.url, write_key, user_id="u-0", user_token="1.forged"))
    )
    wait_until(
        lambda: browser.execute_script("return document.getElementById('recs').dataset.state") == "error",
        browser=browser,
        what="the refusal",
    )
    error = browser.execute_script("return document.getElementById('recs').dataset.error")
    assert "user token" in error
    assert not browser.execute_script("return document.querySelectorAll('#recs .cdp-rec').length")
