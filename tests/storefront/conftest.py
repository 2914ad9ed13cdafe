"""Browser fixtures for the storefront: headless Chromium (Debian's chromium + chromedriver) and a
shop on a second origin (its own little HTTP server on 127.0.0.1), while cdp is pytest-django's live
server on ``localhost``: two origins, so every call is a real cross-origin call with CORS."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings

from tests.browser import chromium_options, chromium_start, needs_browser

HAVE_SDKS = all(Path(path).is_dir() for path in settings.STOREFRONT_SDK_DIRS.values())

browser_required = [
    needs_browser,
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


class InFlight:
    """Counts the requests this process is handling (the live server's threads included), from
    Django's request_started/request_finished signals: finished is sent when the server closes the
    response, after the view's writes and its on-commit hooks."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def started(self, **kwargs) -> None:
        with self.lock:
            self.count += 1

    def finished(self, **kwargs) -> None:
        with self.lock:
            self.count -= 1

    def wait_idle(self, *, timeout: float = 30.0, quiet_for: float = 0.3) -> None:
        """Until no request has been in flight for ``quiet_for`` seconds."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            if self.count <= 0:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= quiet_for:
                    return
            else:
                idle_since = None
            time.sleep(0.05)
        raise RuntimeError(f"the live server still handles {self.count} request(s) after {timeout}s")


def quiesce(driver) -> None:
    """Before the test's flush: nothing may write to the database any more. The page goes to
    about:blank (its SDKs stop: no more queued calls, retries, beacons or widget impressions), the
    browser quits, the live server finishes what it has in flight and the served-log writer writes what
    it holds (the Celery worker's tasks are waited for by ``tests.conftest._celery_quiet_before_flush``)."""
    from django.core.signals import request_finished, request_started

    from recommendations.services import served_log_writer

    in_flight: InFlight = driver._cdp_in_flight
    try:
        try:
            driver.get("about:blank")
        finally:
            driver.quit()
        in_flight.wait_idle()
    finally:
        request_started.disconnect(in_flight.started)
        request_finished.disconnect(in_flight.finished)
    served_log_writer.flush()


@pytest.fixture
def browser():
    from django.core.signals import request_finished, request_started

    options = chromium_options(width=1200, height=900)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    in_flight = InFlight()
    request_started.connect(in_flight.started)
    request_finished.connect(in_flight.finished)
    try:
        driver = chromium_start(options)
    except Exception:
        request_started.disconnect(in_flight.started)
        request_finished.disconnect(in_flight.finished)
        raise
    driver._cdp_in_flight = in_flight
    yield driver
    quiesce(driver)


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
