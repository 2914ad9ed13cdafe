"""Both browser SDKs, as shops load them (pinned npm packages, served by cdp), with only their host
option pointed at cdp, on a page of another origin, in headless Chromium: every call of every
delivery mode is stored; a page on an origin its source does not list stores nothing."""

from __future__ import annotations

import json

import pytest

from profiles import services
from profiles.models import Event, Identifier

from .conftest import browser_required, wait_until

pytestmark = browser_required

CALLS = {"page", "alias", "identify", "track", "group"}


def segment_page(cdp: str, write_key: str, options: dict) -> str:
    """Analytics.js 2.0 from its npm package (UMD build), loaded with cdnURL = cdp and nothing else."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<script src="{cdp}/static/storefront/vendor/analytics-next/index.js"></script>
<script>
(async () => {{
  try {{
    const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
      {{writeKey: {json.dumps(write_key)}, cdnURL: {json.dumps(cdp)}}}, {json.dumps(options)});
    await analytics.page('Home');
    await analytics.alias('u-42');
    await analytics.identify('u-42', {{email: 'kim@example.com', first_name: 'Kim'}});
    await analytics.track('Product Viewed', {{product_id: 'sku-1'}});
    await analytics.group('g-1', {{name: 'Acme'}});
    window.sdkDone = true;
  }} catch (e) {{ window.sdkError = String(e); }}
}})();
</script></body></html>"""


def segment_snippet_page(cdp: str, write_key: str) -> str:
    """Segment's copy-paste snippet (v5.2.1 shape), with _cdn set to cdp: the one change."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>shop</title>
<script>
!function(){{var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(analytics.invoked)
window.console&&console.error&&console.error("Segment snippet included twice.");else{{analytics.invoked=!0;
analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group","track",
"ready","alias","debug","page","screen","once","off","on","addSourceMiddleware","addIntegrationMiddleware",
"setAnonymousId","addDestinationMiddleware","register"];analytics.factory=function(e){{return function(){{
if(window[i].initialized)return window[i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);
if(["track","screen","alias","group","page","identify"].indexOf(e)>-1){{
var c=document.querySelector("link[rel='canonical']");
n.push({{__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,s:location.search,
t:document.title,r:document.referrer}})}}
n.unshift(e);analytics.push(n);return analytics}}}};
for(var n=0;n<analytics.methods.length;n++){{var key=analytics.methods[n];
analytics[key]=analytics.factory(key)}}analytics.load=function(key,n){{var t=document.createElement("script");
t.type="text/javascript";t.async=!0;t.setAttribute("data-global-segment-analytics-key",i);
t.src={json.dumps(cdp)}+"/analytics.js/v1/"+key+"/analytics.min.js";var r=document.getElementsByTagName("script")[0];
r.parentNode.insertBefore(t,r);analytics._loadOptions=n}};analytics._writeKey={json.dumps(write_key)};
analytics._cdn={json.dumps(cdp)};analytics.SNIPPET_VERSION="5.2.1";
analytics.load({json.dumps(write_key)});
analytics.page('Home');analytics.alias('u-42');
analytics.identify('u-42',{{email:'kim@example.com',first_name:'Kim'}});
analytics.track('Product Viewed',{{product_id:'sku-1'}});analytics.group('g-1',{{name:'Acme'}});
}}}}();
</script></head><body></body></html>"""


def rudderstack_page(cdp: str, write_key: str, options: dict) -> str:
    """RudderStack's SDK from its npm package (bundled UMD build): data plane and configUrl = cdp."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<script src="{cdp}/static/storefront/vendor/rudderstack/index.js"></script>
<script>
try {{
  const ra = new rudderanalytics.RudderAnalytics();
  ra.load({json.dumps(write_key)}, {json.dumps(cdp)}, Object.assign({{configUrl: {json.dumps(cdp)}}},
    {json.dumps(options)}));
  ra.ready(() => {{
    ra.page('Home');
    ra.alias('u-42');
    ra.identify('u-42', {{email: 'kim@example.com', first_name: 'Kim'}});
    ra.track('Product Viewed', {{product_id: 'sku-1'}});
    ra.group('g-1', {{name: 'Acme'}});
    window.sdkDone = true;
  }});
}} catch (e) {{ window.sdkError = String(e); }}
</script></body></html>"""


def assert_every_call_stored(browser, source) -> None:
    def stored():
        return set(Event.objects.filter(source=source).values_list("type", flat=True)) >= CALLS

    wait_until(stored, browser=browser, what="all five calls stored")
    assert browser.execute_script("return window.sdkError || null") is None
    profile = Identifier.objects.get(kind="user_id", value="u-42").profile
    assert profile.traits["first_name"] == "Kim"  # RudderStack: from context.traits
    assert Identifier.objects.get(kind="email", value="kim@example.com").profile_id == profile.pk
    track = Event.objects.get(source=source, type="track")
    assert track.name == "Product Viewed" and track.properties["product_id"] == "sku-1"


@pytest.fixture
def shop_source(shop_site):
    return services.source_create(name="shop", allowed_origins=[shop_site.origin])


SEGMENT_MODES = {
    "standard": {},
    "batching": {"integrations": {"Segment.io": {"deliveryStrategy": {"strategy": "batching", "config": {"size": 5}}}}},
    "keepalive": {"integrations": {"Segment.io": {"deliveryStrategy": {"config": {"keepalive": True}}}}},
}


@pytest.mark.parametrize("mode", SEGMENT_MODES)
def test_analytics_js_delivers_every_call_from_another_origin(browser, live_server, shop_site, shop_source, mode):
    source, write_key = shop_source
    browser.get(shop_site.page("/", segment_page(live_server.url, write_key, SEGMENT_MODES[mode])))
    assert_every_call_stored(browser, source)


def test_analytics_js_snippet_loads_from_cdp_with_only_the_cdn_changed(browser, live_server, shop_site, shop_source):
    source, write_key = shop_source
    browser.get(shop_site.page("/", segment_snippet_page(live_server.url, write_key)))
    assert_every_call_stored(browser, source)


RUDDERSTACK_MODES = {
    "xhr": {},
    "xhr-batch": {"queueOptions": {"batch": {"enabled": True, "maxItems": 5, "flushInterval": 300}}},
    "beacon": {"useBeacon": True, "beaconQueueOptions": {"maxItems": 5, "flushQueueInterval": 300}},
}


@pytest.mark.parametrize("mode", RUDDERSTACK_MODES)
def test_rudderstack_delivers_every_call_from_another_origin(browser, live_server, shop_site, shop_source, mode):
    source, write_key = shop_source
    browser.get(shop_site.page("/", rudderstack_page(live_server.url, write_key, RUDDERSTACK_MODES[mode])))
    assert_every_call_stored(browser, source)


def test_a_page_on_an_origin_the_source_does_not_list_stores_nothing(browser, live_server, shop_site):
    _, allowed_key = services.source_create(name="shop", allowed_origins=[shop_site.origin])
    other, other_key = services.source_create(name="other-shop", allowed_origins=["https://other.example"])
    browser.get(shop_site.page("/", rudderstack_page(live_server.url, other_key, {})))
    browser.get(shop_site.page("/seg", segment_page(live_server.url, other_key, {})))
    # the page can read the refusal: a clear 403 in the one error shape
    answer = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0] + '/v1/t', {method: 'POST', headers: {'Content-Type': 'text/plain',
          Authorization: 'Basic ' + btoa(arguments[1] + ':')},
          body: JSON.stringify({event: 'X', anonymousId: 'a-1'})})
        .then(r => r.json().then(body => done({status: r.status, body})), e => done({error: String(e)}));""",
        live_server.url,
        other_key,
    )
    assert answer["status"] == 403, answer
    assert answer["body"]["error"]["code"] == "origin_not_allowed"
    # while the same page with its own source's key is accepted
    answer = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0] + '/v1/t', {method: 'POST', headers: {'Content-Type': 'text/plain',
          Authorization: 'Basic ' + btoa(arguments[1] + ':')},
          body: JSON.stringify({event: 'X', anonymousId: 'a-1'})})
        .then(r => done({status: r.status}), e => done({error: String(e)}));""",
        live_server.url,
        allowed_key,
    )
    assert answer["status"] == 200, answer
    assert not Event.objects.filter(source=other).exists()


def test_gzip_bodies_from_a_page(browser, live_server, shop_site, shop_source):
    """Where a page compresses its batch (CompressionStream), cdp takes it as it comes."""
    source, write_key = shop_source
    browser.get(shop_site.page("/", "<!doctype html><title>shop</title>"))
    answer = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const body = JSON.stringify({writeKey: arguments[1], batch: [{type: 'track', event: 'Gz', anonymousId: 'a'}]});
        const stream = new Blob([body]).stream().pipeThrough(new CompressionStream('gzip'));
        new Response(stream).arrayBuffer().then(buf => fetch(arguments[0] + '/v1/batch', {method: 'POST',
          headers: {'Content-Type': 'text/plain', 'Content-Encoding': 'gzip'}, body: buf}))
        .then(r => done({status: r.status}), e => done({error: String(e)}));""",
        live_server.url,
        write_key,
    )
    assert answer["status"] == 200, answer
    assert Event.objects.filter(source=source, name="Gz").exists()


def test_beacons_with_the_key_in_the_body_and_a_foreign_origins_beacon_stores_nothing(
    browser, live_server, shop_site, shop_source, caplog
):
    """navigator.sendBeacon cannot set headers and skips the preflight: the key rides in the body,
    and the origin check alone keeps a foreign page's beacon out."""
    source, write_key = shop_source
    foreign, foreign_key = services.source_create(name="foreign", allowed_origins=["https://elsewhere.example"])
    browser.get(shop_site.page("/", "<!doctype html><title>shop</title>"))
    sent = browser.execute_script(
        """const beacon = (key, name) => navigator.sendBeacon(arguments[0] + '/v1/b', new Blob([JSON.stringify(
             {writeKey: key, batch: [{type: 'track', event: name, anonymousId: 'a-b'}]})], {type: 'text/plain'}));
        return [beacon(arguments[1], 'Beacon Mine'), beacon(arguments[2], 'Beacon Foreign')];""",
        live_server.url,
        write_key,
        foreign_key,
    )
    assert sent == [True, True]
    wait_until(lambda: Event.objects.filter(source=source, name="Beacon Mine").exists(), browser=browser, what="beacon")
    wait_until(  # the foreign beacon reached cdp and was refused (django.request logs every 4xx)
        lambda: any(r.getMessage() == "Forbidden: /v1/b" for r in caplog.records),
        browser=browser,
        what="the foreign beacon's 403",
    )
    assert not Event.objects.filter(source=foreign).exists()
