"""Headless Chromium for the browser journeys (privacy center, admin, storefront SDKs): Debian's
chromium and chromedriver, driven by selenium. One place for the binaries, the skip rule and the
flags that keep Chromium off the network."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)

needs_browser = pytest.mark.skipif(
    not HAVE_BROWSER,
    reason=f"no headless browser: need chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}); "
    "apt-get install chromium chromium-driver",
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def chromium_options(*, width: int, height: int):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return options


def chromium_start(options):
    """A driver for these options, with a page-load limit so a hung page fails the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver
