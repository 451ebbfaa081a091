"""The ``/index.html`` page in a real headless browser (Debian's chromium + chromedriver).

A real Site on 127.0.0.1 with a fake push client serves the page and
``/push``; Selenium runs in a thread so that the reactor keeps serving. The
browser is never downloaded: the test uses the system binaries or skips.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from mpush.wire import java_alloc_content
from tests.fakes import TOKEN, FakePushClient, make_site

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(tempfile.gettempdir()) / "mpush-push-page.png"
WAIT = 15.0  # s, for anything the page does after a click

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
]

T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    # Missing is a failure, not a skip: scripts/setup installs both.
    assert os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER), (
        "needs Debian's chromium and chromium-driver (scripts/setup installs them)")
    # Selenium Manager would fetch a browser when it finds none: keep it offline.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="mpush-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1100,1500",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served() -> Iterator[Callable[..., tuple[FakePushClient, str]]]:
    """Start a Site on 127.0.0.1 (port 0); returns (fake client, page URL)."""
    ports: list[Any] = []

    def serve(token: str | None = None) -> tuple[FakePushClient, str]:
        client = FakePushClient(outcomes={"bob": "offline", "carol": "timeout",
                                          "dave": "failure"})
        port = reactor.listenTCP(0, make_site(client, token=token), interface="127.0.0.1")
        ports.append(port)
        return client, f"http://127.0.0.1:{port.getHost().port}/index.html"

    yield serve
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


def in_thread(fn: Callable[[], T]) -> Any:
    # Selenium blocks; the reactor must keep serving the page meanwhile.
    return threads.deferToThread(fn)


def fill(driver: WebDriver, element_id: str, text: str) -> None:
    element = driver.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(text)


def result_rows(driver: WebDriver) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#results-body tr.result-row")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def wait_for_rows(driver: WebDriver, count: int) -> list[list[str]]:
    WebDriverWait(driver, WAIT).until(lambda d: len(result_rows(d)) == count)
    return result_rows(driver)


def wait_for_error(driver: WebDriver) -> str:
    box = driver.find_element(By.ID, "error")
    WebDriverWait(driver, WAIT).until(lambda d: box.is_displayed() and box.text)
    return box.text


@pytest_twisted.ensureDeferred
async def test_page_sends_a_push_and_shows_every_result(
    browser: WebDriver, served: Callable[..., tuple[FakePushClient, str]]
) -> None:
    client, url = served()

    def drive() -> dict[str, Any]:
        browser.get(url)
        assert browser.title == "mpush-alloc · Send a push"
        fill(browser, "users", "alice, bob\ncarol, dave")
        fill(browser, "content", "hello from the test")
        browser.find_element(By.ID, "send").click()
        rows = wait_for_rows(browser, 4)
        badge = browser.find_element(By.CSS_SELECTOR, "#results-body .badge.r-success")
        chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#summary .chip")]
        browser.save_screenshot(str(SCREENSHOT))
        return {
            "rows": rows,
            "chips": chips,
            "success_colour": badge.value_of_css_property("background-color"),
            "status": browser.find_element(By.ID, "status").text,
            "error_shown": browser.find_element(By.ID, "error").is_displayed(),
        }

    seen = await in_thread(drive)
    # The reason in words, then the word of the answer.
    assert seen["rows"] == [
        ["alice", "Mobile (Android/iOS)", "success", "—", "10.0.0.5:3001", "12.3"],
        ["bob", "—", "offline", "no route in Redis no_route", "—", "0.4"],
        ["carol", "Mobile (Android/iOS)", "timeout", "no answer in time timed_out",
         "10.0.0.5:3001", "12.3"],
        ["dave", "Mobile (Android/iOS)", "failure",
         "gateway error 2 (device not reached) gateway_error", "10.0.0.5:3001", "12.3"],
    ]
    assert seen["chips"] == ["success: 1", "failure: 1", "offline: 1", "timeout: 1"]
    assert seen["success_colour"] in ("rgba(26, 127, 55, 1)", "rgb(26, 127, 55)")
    assert seen["status"].startswith("Done in ")
    assert not seen["error_shown"]
    assert client.calls == [("push", ["alice", "bob", "carol", "dave"],
                             java_alloc_content("hello from the test", 1),
                             {"ack": "none", "timeout_ms": 3000, "tags": None})]
    assert SCREENSHOT.stat().st_size > 10_000


@pytest_twisted.ensureDeferred
async def test_page_shows_the_servers_error_in_words(
    browser: WebDriver, served: Callable[..., tuple[FakePushClient, str]]
) -> None:
    client, url = served()

    def drive() -> dict[str, Any]:
        browser.get(url)
        fill(browser, "users", " , ")
        browser.find_element(By.ID, "send").click()
        text = wait_for_error(browser)
        users = browser.find_element(By.ID, "users")
        return {"text": text, "invalid": users.get_attribute("aria-invalid"),
                "rows": result_rows(browser)}

    seen = await in_thread(drive)
    assert "Refused (400" in seen["text"]
    assert "userId is empty" in seen["text"]
    assert "Field: userId" in seen["text"]
    assert seen["invalid"] == "true"  # the user ids box is marked
    assert seen["rows"] == []
    assert client.calls == []


@pytest_twisted.ensureDeferred
async def test_page_broadcast_with_raw_content_and_options(
    browser: WebDriver, served: Callable[..., tuple[FakePushClient, str]]
) -> None:
    client, url = served()

    def drive() -> list[list[str]]:
        browser.get(url)
        browser.find_element(By.ID, "broadcast").click()
        browser.find_element(By.CSS_SELECTOR, "label:has(#mode-raw)").click()
        fill(browser, "content", '{"raw": true}')
        fill(browser, "condition", "tags.indexOf('vip')>=0")
        fill(browser, "tags", "vip, beta")
        browser.find_element(By.CSS_SELECTOR, "#ack option[value=biz]").click()
        fill(browser, "timeout", "5000")
        browser.find_element(By.ID, "send").click()
        return wait_for_rows(browser, 2)

    rows = await in_thread(drive)
    assert [row[0] for row in rows] == ["(broadcast)", "(broadcast)"]
    assert [row[2] for row in rows] == ["success", "timeout"]
    assert client.calls == [("broadcast", None, b'{"raw": true}', {
        "tags": ("vip", "beta"), "condition": "tags.indexOf('vip')>=0", "task_id": None,
        "ack": "biz", "timeout_ms": 5000})]


@pytest_twisted.ensureDeferred
async def test_page_sends_the_token_and_explains_a_401(
    browser: WebDriver, served: Callable[..., tuple[FakePushClient, str]]
) -> None:
    client, url = served(token=TOKEN)

    def drive() -> dict[str, Any]:
        browser.get(url)
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        fill(browser, "users", "alice")
        browser.find_element(By.ID, "send").click()
        refused = wait_for_error(browser)
        fill(browser, "token", TOKEN)
        browser.find_element(By.ID, "send").click()
        rows = wait_for_rows(browser, 1)
        stored = browser.execute_script(
            "return sessionStorage.getItem('mpush-alloc.push-token')")
        browser.refresh()  # the token survives a reload of this tab
        kept = browser.find_element(By.ID, "token").get_attribute("value")
        return {"refused": refused, "rows": rows, "stored": stored, "kept": kept}

    seen = await in_thread(drive)
    assert "Refused (401" in seen["refused"]
    assert "push token is required" in seen["refused"]
    assert seen["rows"][0][:3] == ["alice", "Mobile (Android/iOS)", "success"]
    assert seen["stored"] == TOKEN
    assert seen["kept"] == TOKEN
    assert len(client.calls) == 1


#: Where the page's screenshots are kept for people to look at (``run/`` is ignored by git).
SHOTS = Path(__file__).resolve().parent.parent / "run" / "screenshots"


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)],
                         ids=["laptop", "phone"])
@pytest_twisted.ensureDeferred
async def test_page_fits_a_laptop_and_a_phone(
    browser: WebDriver, served: Callable[..., tuple[FakePushClient, str]],
    width: int, height: int,
) -> None:
    _, url = served()

    def drive() -> dict[str, Any]:
        browser.set_window_size(width, height)
        browser.get(url)
        fill(browser, "users", "alice, bob\ncarol")
        fill(browser, "content", "hello from the test")
        browser.find_element(By.ID, "send").click()
        rows = wait_for_rows(browser, 3)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / f"page-{width}x{height}.png"
        browser.execute_script("document.getElementById('outcome').scrollIntoView()")
        browser.save_screenshot(str(shot))
        send = browser.find_element(By.ID, "send").rect
        return {
            "rows": len(rows),
            "viewport": browser.execute_script("return window.innerWidth"),
            # Wider than the viewport means a sideways scroll on a phone.
            "content_width": browser.execute_script(
                "return document.documentElement.scrollWidth"),
            "send_right": send["x"] + send["width"],
            "shot": shot,
        }

    seen = await in_thread(drive)
    assert seen["rows"] == 3
    assert seen["content_width"] <= seen["viewport"], "the page scrolls sideways"
    assert 0 < seen["send_right"] <= seen["viewport"], "the Send button is cut off"
    assert seen["shot"].stat().st_size > 10_000
