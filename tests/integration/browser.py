"""The console in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (nothing is downloaded: both paths are given)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

T = TypeVar("T")

# Where the tests leave their screenshots; `docs/images` refreshes the docs' ones.
SCREENSHOT_DIR_ENV = "FERRY_SCREENSHOT_DIR"
WINDOW = "1440,1000"


def chromium_missing() -> str | None:
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install.sh installs it)"
    return None


class Console:
    """One browser tab on ferry's console, with waits that say what they waited for."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = shots

    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.base_url}/#/{fragment}")

    def go(self, fragment: str) -> None:
        """Follows an in-page link, as a click would: no reload."""
        self.driver.execute_script("location.hash = arguments[0]", f"#/{fragment}")

    def sign_in(self, user: str, token: str) -> None:
        self.open()
        self.wait_for("#signin-user").send_keys(user)
        self.find("#signin-token").send_keys(token)
        self.find("#signin button[type=submit]").click()
        self.wait(lambda: self.find("#whoami").text.startswith(user), 20, f"{user} signed in")

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found = self.all(css)
        return found[0].text if found else ""

    def wait(self, probe: Callable[[], T], timeout: float, what: str) -> T:
        """``probe``'s first truthy answer; a vanished element counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(StaleElementReferenceException):
                answer = probe()
                if answer:
                    return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}; page says:\n"
                                     f"{self.find('body').text[:3000]}\n"
                                     f"script errors: {self.console_errors()}")
            time.sleep(0.2)

    def wait_for(self, css: str, timeout: float = 20, text: str | None = None) -> WebElement:
        def shown() -> WebElement | None:
            for el in self.all(css):
                if el.is_displayed() and (text is None or text in el.text):
                    return el
            return None
        return self.wait(shown, timeout, f"{css}{f' with {text!r}' if text else ''}")

    def choose(self, css: str, value: str) -> None:
        Select(self.find(css)).select_by_value(value)

    def mark_page(self) -> None:
        """A mark in the page's memory; a reload would forget it."""
        self.driver.execute_script("window.__ferryNotReloaded = true")

    def page_kept(self) -> bool:
        return bool(self.driver.execute_script("return window.__ferryNotReloaded === true"))

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"console-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        """What the page's scripts reported as severe (a script error, a failed load)."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE" and "/api/v1/" not in entry["message"]]


@contextlib.contextmanager
def console(base_url: str, shots: Path) -> Iterator[Console]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", f"--window-size={WINDOW}", "--lang=en-GB"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as err:
        raise AssertionError(f"Chromium did not start: {err.msg}") from err
    try:
        yield Console(driver, base_url, Path(os.environ.get(SCREENSHOT_DIR_ENV) or shots))
    finally:
        driver.quit()
