"""Debian's headless Chromium driven by Selenium through the system chromedriver: nothing is
downloaded (both paths are given, so selenium-manager never runs)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chrome(downloads: Path | None = None, width: int = 1400, height: int = 1000):  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "chromium and chromium-driver are not installed (apt install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={width},{height}",
        "--disable-gpu",
    ):
        options.add_argument(arg)
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Chromium leaves a folder with its singleton socket in TMPDIR at every start (228 of
    # them in /tmp after a week of test runs): it gets a folder of its own, gone at quit.
    tmp = tempfile.mkdtemp(prefix="antiphon-chromium-")
    service = Service(executable_path=str(CHROMEDRIVER), env={**os.environ, "TMPDIR": tmp})
    driver = webdriver.Chrome(service=service, options=options)
    quit_ = driver.quit

    def quit() -> None:
        try:
            quit_()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    driver.quit = quit
    return driver


def have_browser() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists() and shutil.which("chromium") is not None
