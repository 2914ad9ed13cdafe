"""Browser fixtures for the storefront: headless Chromium (Debian's chromium + chromedriver) and a
shop on a second origin (its own little HTTP server on 127.0.0.1), while cdp is pytest-django's live
server on ``localhost``: two origins, so every call is a real cross-origin call with CORS."""

from __future__ import annotations

import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
HAVE_SDKS = all(Path(path).is_dir() for path in settings.STOREFRONT_SDK_DIRS.values())

browser_required = [
    pytest.mark.skipif(
        not HAVE_BROWSER,
        reason=f"no headless browser: need chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}); "
        "apt-get install chromium chromium-driver",
    ),
    pytest.mark.skipif(not HAVE_SDKS, reason="the browser SDKs are not installed: run `npm ci` (make test does)"),
    pytest.mark.django_db(transaction=True),
]


class Shop:
    """A shop's web server on its own origin: pages are registered by path, as HTML strings."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = shop.pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, path: str, html: str) -> str:
        self.pages[path] = html
        return f"{self.origin}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shop_site():
    server = Shop()
    yield server
    server.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_until(predicate, *, timeout: float = 20.0, browser=None, what: str = "condition"):
    """Poll (the database, the page) until ``predicate()`` is truthy; on timeout fail with the
    browser's console, which is where an SDK says why it did not send."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    console = ""
    if browser is not None:
        try:
            console = "\n".join(entry["message"] for entry in browser.get_log("browser"))
        except Exception:
            console = "(no console log)"
    pytest.fail(f"timed out waiting for {what}; browser console:\n{console}")


@pytest.fixture
def trained(settings):
    """A small shop with a trained model (tests/recommendations' shop); person 0 (user u-0) bought
    ELE-1 and BEA-1 and consents to personalisation."""
    from django.utils import timezone

    from consent.services import purposes_ensure
    from profiles import services
    from profiles.models import Identifier
    from recommendations import serving
    from tests.recommendations.conftest import (
        ORDERS,
        grant,
        make_people,
        make_products,
        publish,
        store_orders,
        train_from_events,
    )

    settings.RECS_SERVED_LOG_ASYNC = False
    purposes_ensure()
    serving.runtime.reset()
    source, _ = services.source_create(name="orders")
    make_products()
    people = make_people(source, len(ORDERS) + 2)
    store_orders(source, people)
    publish(train_from_events(params={"primary": "popularity", "recommenders": ["popularity", "buy_again"]}))
    Identifier.objects.create(kind="user_id", value="u-0", profile_id=people[0], last_seen_at=timezone.now())
    grant(people[0])
    yield people
    serving.runtime.reset()
