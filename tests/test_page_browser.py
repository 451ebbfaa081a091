"""The ``/index.html`` console in a real headless browser (Debian's chromium + chromedriver).

Two kinds of server behind the page:

* a Site on 127.0.0.1 with a fake push client (``/push``) and the status
  fakes (``/cluster``), for exact requests and the cluster's outage words;
* the daemon's whole service tree against real ZooKeeper and Redis with fake
  mpush nodes (``tests/harness/stack.py``), at a laptop's and a phone's size:
  the cluster, a user's routes, a push and a refused push, each saved as a
  screenshot under ``run/screenshots/``.

Selenium runs in a thread so that the reactor keeps serving. The browser is
never downloaded: the test uses the system binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.web.resource import Resource
from twisted.web.server import Request

from mpush.web.cluster import ClusterResource
from mpush.web.health import HealthResource
from mpush.web.push_access import PushAccess
from mpush.wire import java_alloc_content
from scripts.demo import DEMO_USER_PREFIX
from tests.fakes import TOKEN, FakePushClient, Fakes, make_site
from tests.harness.redis import RedisServer
from tests.harness.stack import running_stack
from tests.harness.zookeeper import ZooKeeperServer

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 15.0  # s, for anything the page does after a click
POLL = 2.0  # s, the page's cluster refresh (POLL_MS)
LOOPBACK = ("127.0.0.1/32", "::1/128")
RED = ("rgb(207, 34, 46)", "rgba(207, 34, 46, 1)")  # --bad
AMBER = ("rgb(154, 103, 0)", "rgba(154, 103, 0, 1)")  # --late
#: Where the page's screenshots are kept for people to look at (``run/`` is ignored by git).
SHOTS = Path(__file__).resolve().parent.parent / "run" / "screenshots"

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
    # The console's messages, for get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class FixedJson(Resource):
    """The same JSON document at every read."""

    isLeaf = True

    def __init__(self, document: Any) -> None:
        super().__init__()
        self.body = json.dumps(document).encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return self.body


class CountedCluster(ClusterResource):
    """``/cluster`` that counts the reads (to see the page's polling)."""

    reads = 0

    def render_GET(self, request: Request) -> bytes:
        self.reads += 1
        return super().render_GET(request)


@dataclass
class Served:
    client: FakePushClient
    fakes: Fakes
    cluster: CountedCluster
    url: str


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    """Start a Site on 127.0.0.1 (port 0): ``/push`` on a fake client, ``/cluster`` on fakes."""
    ports: list[Any] = []

    def serve(token: str | None = None, fakes: Fakes | None = None) -> Served:
        client = FakePushClient(outcomes={"bob": "offline", "carol": "timeout",
                                          "dave": "failure"})
        fakes = fakes or Fakes()
        site = make_site(client, token=token)
        cluster = CountedCluster(fakes.status(), PushAccess(token=token, allow=LOOPBACK))
        site.resource.putChild(b"cluster", cluster)
        site.resource.putChild(b"health", HealthResource(fakes.status()))
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        ports.append(port)
        return Served(client, fakes, cluster,
                      f"http://127.0.0.1:{port.getHost().port}/index.html")

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


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def rows_of(driver: WebDriver, selector: str) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, selector)
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def result_rows(driver: WebDriver) -> list[list[str]]:
    return rows_of(driver, "#results-body tr.result-row")


def wait_for_rows(driver: WebDriver, count: int) -> list[list[str]]:
    WebDriverWait(driver, WAIT).until(lambda d: len(result_rows(d)) == count)
    return result_rows(driver)


def wait_for_error(driver: WebDriver) -> str:
    box = driver.find_element(By.ID, "error")
    WebDriverWait(driver, WAIT).until(lambda d: box.is_displayed() and box.text)
    return str(box.text)


def wait_for_cluster(driver: WebDriver, check: Callable[[WebDriver], Any],
                     timeout: float = WAIT) -> None:
    WebDriverWait(driver, timeout).until(check)


def bars(driver: WebDriver, where: str = "cs-list") -> list[str]:
    """The servers drawn (connection servers; ``ws-list``: WebSocket servers), as their
    addresses, in the page's order."""
    return [li.find_element(By.CSS_SELECTOR, ".addr").text
            for li in driver.find_elements(By.CSS_SELECTOR, f"#{where} li.server")]


def in_viewport(driver: WebDriver, element_id: str | None = None,
                selector: str | None = None) -> bool:
    """Whether the element is shown, top to bottom inside the viewport, starting on it
    (a table row may go on to the right: its table scrolls sideways in its wrapper)."""
    element = (driver.find_element(By.ID, element_id) if element_id is not None
               else driver.find_element(By.CSS_SELECTOR, selector or ""))
    return bool(driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.left >= 0 &&"
        " r.bottom <= window.innerHeight && r.left < window.innerWidth;", element))


def fresh_log(driver: WebDriver) -> None:
    """An empty console log, and no page left to add to it: an earlier test's page still
    polls its server, gone by now, so it would log a refused read after the emptying."""
    driver.get("about:blank")
    driver.get_log("browser")  # reading empties it: what earlier tests left


def severe(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest_twisted.ensureDeferred
async def test_page_sends_a_push_and_shows_every_result(
    browser: WebDriver, served: Callable[..., Served]
) -> None:
    s = served()

    def drive() -> dict[str, Any]:
        browser.get(s.url)
        title = browser.title
        fill(browser, "users", "alice, bob\ncarol, dave")
        fill(browser, "content", "hello from the test")
        browser.find_element(By.ID, "send").click()
        rows = wait_for_rows(browser, 4)
        badge = browser.find_element(By.CSS_SELECTOR, "#results-body .badge.r-success")
        return {
            "title": title,
            "rows": rows,
            "summary": text_of(browser, "summary"),
            "success_colour": badge.value_of_css_property("background-color"),
            "status": text_of(browser, "status"),
            "error_shown": browser.find_element(By.ID, "error").is_displayed(),
        }

    seen = await in_thread(drive)
    assert seen["title"] == "mpush-alloc console"
    # The reason in words, then the word of the answer.
    assert seen["rows"] == [
        ["alice", "Mobile (Android/iOS)", "success", "—", "10.0.0.5:3001", "12.3"],
        ["bob", "—", "offline", "no route in Redis no_route", "—", "0.4"],
        ["carol", "Mobile (Android/iOS)", "timeout", "no answer in time timed_out",
         "10.0.0.5:3001", "12.3"],
        ["dave", "Mobile (Android/iOS)", "failure",
         "gateway error 2: device not reached gateway_error", "10.0.0.5:3001", "12.3"],
    ]
    # Summed up beside the button, each reason in words.
    assert seen["summary"] == ("1 delivered, 1 offline (no route in Redis), 1 failed (gateway"
                               " error 2: device not reached), 1 timed out (no answer in time).")
    assert seen["success_colour"] in ("rgba(26, 127, 55, 1)", "rgb(26, 127, 55)")
    assert seen["status"].startswith("Done in ")
    assert not seen["error_shown"]
    assert s.client.calls == [("push", ["alice", "bob", "carol", "dave"],
                               java_alloc_content("hello from the test", 1),
                               {"ack": "none", "timeout_ms": 3000, "tags": None})]


@pytest_twisted.ensureDeferred
async def test_page_shows_the_servers_error_at_the_field_in_its_words(
    browser: WebDriver, served: Callable[..., Served]
) -> None:
    s = served()

    def drive() -> dict[str, Any]:
        browser.get(s.url)
        users = browser.find_element(By.ID, "users")
        start = {"value": users.get_attribute("value"),
                 "placeholder": users.get_attribute("placeholder")}
        browser.find_element(By.ID, "send").click()  # the box is empty
        text = wait_for_error(browser)
        return {
            "start": start, "text": text,
            "at_field": text_of(browser, "users-error"),
            "invalid": users.get_attribute("aria-invalid"),
            "focused": browser.execute_script("return document.activeElement.id"),
            # The red mark stays while the field has the focus.
            "outline": users.value_of_css_property("outline-color"),
            "border": users.value_of_css_property("border-top-color"),
            "rows": result_rows(browser),
        }

    seen = await in_thread(drive)
    assert seen["start"]["value"] == ""
    assert seen["start"]["placeholder"] == f"e.g. {DEMO_USER_PREFIX}0, {DEMO_USER_PREFIX}1"
    assert seen["text"] == "Refused (400 Bad Request):\n“User ids” is empty"
    assert seen["at_field"] == "“User ids” is empty"
    assert "userId" not in seen["text"] + seen["at_field"]  # the page's words, not the API's
    assert seen["invalid"] == "true"
    assert seen["focused"] == "users"
    assert seen["outline"] in RED and seen["border"] in RED
    assert seen["rows"] == []
    assert s.client.calls == []


@pytest_twisted.ensureDeferred
async def test_page_broadcast_with_raw_content_and_options(
    browser: WebDriver, served: Callable[..., Served]
) -> None:
    s = served()

    def drive() -> dict[str, Any]:
        browser.get(s.url)

        def enabled() -> dict[str, bool]:
            return {i: browser.find_element(By.ID, i).is_enabled()
                    for i in ("users", "tags", "condition", "taskId")}

        single = enabled()
        browser.find_element(By.ID, "broadcast").click()
        broadcast = enabled()
        browser.find_element(By.CSS_SELECTOR, "label:has(#mode-raw)").click()
        fill(browser, "content", '{"raw": true}')
        fill(browser, "condition", "tags.indexOf('vip')>=0")
        fill(browser, "tags", "vip, beta")
        browser.find_element(By.CSS_SELECTOR, "#ack option[value=biz]").click()
        fill(browser, "timeout", "5000")
        browser.find_element(By.ID, "send").click()
        return {"single": single, "broadcast": broadcast, "rows": wait_for_rows(browser, 2)}

    seen = await in_thread(drive)
    # Tags, condition and task id apply to a broadcast only.
    assert seen["single"] == {"users": True, "tags": False, "condition": False, "taskId": False}
    assert seen["broadcast"] == {"users": False, "tags": True, "condition": True, "taskId": True}
    rows = seen["rows"]
    assert [row[0] for row in rows] == ["(broadcast)", "(broadcast)"]
    assert [row[2] for row in rows] == ["success", "timeout"]
    assert s.client.calls == [("broadcast", None, b'{"raw": true}', {
        "tags": ("vip", "beta"), "condition": "tags.indexOf('vip')>=0", "task_id": None,
        "ack": "biz", "timeout_ms": 5000})]


@pytest_twisted.ensureDeferred
async def test_page_sends_the_token_and_explains_a_401(
    browser: WebDriver, served: Callable[..., Served]
) -> None:
    s = served(token=TOKEN)

    def drive() -> dict[str, Any]:
        browser.get(s.url)
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        problem = browser.find_element(By.ID, "cluster-problem")
        wait_for_cluster(browser, lambda d: problem.is_displayed() and problem.text)
        cluster_refused = problem.text
        fill(browser, "users", "alice")
        browser.find_element(By.ID, "send").click()
        refused = wait_for_error(browser)
        at_field = text_of(browser, "token-error")
        fill(browser, "token", TOKEN)
        browser.find_element(By.ID, "send").click()  # the token field's change: read again
        rows = wait_for_rows(browser, 1)
        wait_for_cluster(browser, lambda d: not problem.is_displayed() and bars(d) == [])
        stored = browser.execute_script(
            "return sessionStorage.getItem('mpush-alloc.push-token')")
        browser.refresh()  # the token survives a reload of this tab
        kept = browser.find_element(By.ID, "token").get_attribute("value")
        return {"cluster_refused": cluster_refused, "refused": refused, "at_field": at_field,
                "rows": rows, "stored": stored, "kept": kept}

    seen = await in_thread(drive)
    assert seen["cluster_refused"].startswith(
        "Cannot read the cluster: the server asks for its push token (a push token is"
        " required: Authorization: Bearer <token>). Enter the push token at the top of the"
        " page. Tried at ")
    assert seen["refused"].startswith("Refused (401).\nCannot push: the server asks for its"
                                      " push token")
    assert seen["at_field"] == "a push token is required: Authorization: Bearer <token>"
    assert seen["rows"][0][:3] == ["alice", "Mobile (Android/iOS)", "success"]
    assert seen["stored"] == TOKEN
    assert seen["kept"] == TOKEN
    assert len(s.client.calls) == 1


def tab_hidden(driver: WebDriver, hidden: bool) -> None:
    """What the page sees when its tab is hidden or shown again."""
    driver.execute_script(
        "const hidden = arguments[0];"
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});"
        "document.dispatchEvent(new Event('visibilitychange'));", hidden)


@pytest_twisted.ensureDeferred
async def test_the_cluster_outage_in_words_and_no_polling_while_hidden(
    browser: WebDriver, served: Callable[..., Served]
) -> None:
    fakes = Fakes()
    fakes.policy.addresses = ()  # no connection server ever known: GET / answers 503
    fakes.zk.state, fakes.zk.session_id = "connecting", None
    fakes.zk.last_error = "cannot connect to 127.0.0.1:2999: Connection refused"
    fakes.cache.healthy, fakes.cache.last_error = False, "redis 127.0.0.1:6379: down"
    fakes.refresher.last_success, fakes.refresher.last_error = None, "no answer within 1 s"
    fakes.gateways.servers["10.0.0.6:3001"].update(connected=0, last_error="refused")
    s = served(fakes=fakes)

    def drive() -> dict[str, Any]:
        browser.get(s.url)
        wait_for_cluster(browser, lambda d: d.find_element(By.ID, "cs-empty").is_displayed())
        seen = {
            "facts": [li.text for li in browser.find_elements(By.CSS_SELECTOR,
                                                                 "#cluster-facts li")],
            "empty": text_of(browser, "cs-empty"),
            "gateways": rows_of(browser, "#gs-body tr"),
        }
        # Hidden right after a read: no read for two periods; shown again: a read at once.
        before = s.cluster.reads
        WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
            lambda d: s.cluster.reads > before)
        tab_hidden(browser, True)
        hidden_at = s.cluster.reads
        try:
            WebDriverWait(browser, 2 * POLL + 0.5).until(lambda d: s.cluster.reads > hidden_at)
        except TimeoutException:
            pass
        seen["reads_while_hidden"] = s.cluster.reads - hidden_at
        shown_at = s.cluster.reads
        started = time.monotonic()
        tab_hidden(browser, False)
        WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
            lambda d: s.cluster.reads > shown_at)
        seen["read_again_after"] = time.monotonic() - started
        return seen

    seen = await in_thread(drive)
    assert seen["facts"] == [
        "ZooKeeper: connecting: cannot connect to 127.0.0.1:2999: Connection refused. The last"
        " list of servers is still handed out.",
        "Redis (single): unreachable: redis 127.0.0.1:6379: down. Pushes fail and the online"
        " counts stay as last read.",
        "Online counts: the last read failed: no answer within 1 s. Never read since this"
        " daemon started.",
        "GET / answers 503: no connection server has been known yet, so clients get no address.",
    ]
    assert seen["empty"].startswith("No connection server is registered in ZooKeeper yet")
    assert seen["gateways"] == [
        ["10.0.0.5:3001", "up", "2 of 2", "3", "0", "—"],
        ["10.0.0.6:3001", "down", "0 of 2", "1", "0", "refused"],
    ]
    assert seen["reads_while_hidden"] == 0
    assert seen["read_again_after"] < POLL


# -- the whole console against the daemon, ZooKeeper, Redis and fake nodes ------------


def viewport(driver: WebDriver, width: int, height: int) -> None:
    """Exactly ``width`` x ``height`` CSS pixels; a phone's when narrow (the meta viewport)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def fits(driver: WebDriver) -> bool:
    # Wider than the viewport means a sideways scroll (tables scroll inside their wrapper).
    return bool(driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"))


def scrolled_shot(driver: WebDriver, element_id: str, view: str, size: str) -> Path:
    """A screenshot with the element at the top of the viewport."""
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, element_id))
    return shoot(driver, view, size)


def shoot(driver: WebDriver, view: str, size: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"console-{view}-{size}.png"
    driver.save_screenshot(str(shot))
    return shot


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)],
                         ids=["laptop", "phone"])
@pytest_twisted.ensureDeferred
async def test_the_console_on_a_laptop_and_a_phone(
    browser: WebDriver, tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
    redis_server: RedisServer, width: int, height: int,
) -> None:
    size = f"{width}x{height}"
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port) as stack:
        a = await stack.node(host="127.0.0.2")
        b = await stack.node(host="127.0.0.3")
        a.add_users(3, prefix=DEMO_USER_PREFIX)  # demo-0 .. demo-2
        a.add_user(f"{DEMO_USER_PREFIX}0", os_name="windows", online=False)
        redis_server.call("HSET", f"mp:ur:{DEMO_USER_PREFIX}0", "3", '{"host": 5')
        b.add_users(1, prefix="v")
        url = stack.url + "/index.html"

        def open_cluster() -> dict[str, Any]:
            fresh_log(browser)
            viewport(browser, width, height)
            browser.get(url)
            wait_for_cluster(browser, lambda d: sorted(bars(d)) == sorted(
                [a.cs_address, b.cs_address]) and "3 online" in d.find_element(
                    By.ID, "cs-list").text)
            return {"icon": browser.find_element(By.CSS_SELECTOR, "link[rel=icon]")
                    .get_attribute("href"),
                    "ws_shown": browser.find_element(By.ID, "ws-part").is_displayed()}

        opened = await in_thread(open_cluster)
        assert opened["icon"].startswith("data:image/svg+xml,")
        assert not opened["ws_shown"], "no WebSocket server yet: no WebSocket part"

        # A server registers while the page is open: its bar within 3 s.
        c = stack.make_node(host="127.0.0.4", ws_port=8080)  # a WebSocket server too
        registered = time.monotonic()

        def see_cluster() -> dict[str, Any]:
            wait_for_cluster(browser, lambda d: c.cs_address in bars(d) and bars(
                d, "ws-list") == ["127.0.0.4:8080"], timeout=3.0)
            took = time.monotonic() - registered
            WebDriverWait(browser, WAIT).until(lambda d: len(d.find_elements(
                By.CSS_SELECTOR, "#gs-body tr")) == 3)
            browser.execute_script("window.scrollTo(0, 0)")
            servers = browser.find_elements(By.CSS_SELECTOR, "#cs-list li.server")
            return {
                "took": took, "bars": bars(browser),
                "words": [li.find_element(By.CSS_SELECTOR, ".words").text for li in servers],
                "widths": [li.find_element(By.CSS_SELECTOR, ".fill").size["width"]
                           for li in servers],
                "positions": [li.find_element(By.CSS_SELECTOR, ".pos").text for li in servers],
                "facts": text_of(browser, "cluster-facts"),
                "ws": text_of(browser, "ws-list"),
                "gateways_by": text_of(browser, "gs-sub"),
                "fits": fits(browser),
                "shot": shoot(browser, "cluster", size),
            }

        cluster = await in_thread(see_cluster)
        assert cluster["took"] < 3.0
        assert sorted(cluster["bars"]) == sorted([a.cs_address, b.cs_address, c.cs_address])
        assert cluster["positions"] == ["#1", "#2", "#3"]
        by_address = dict(zip(cluster["bars"], cluster["words"], strict=True))
        assert by_address[c.cs_address] == "0 online + 0 handed out, weight 1: load 0"
        assert by_address[a.cs_address].startswith("3 online + ")
        widths = dict(zip(cluster["bars"], cluster["widths"], strict=True))
        assert widths[a.cs_address] > widths[b.cs_address] > widths[c.cs_address] == 0
        assert ("3 connection servers, 1 WebSocket server and 3 gateway servers registered"
                in cluster["facts"])
        assert "Redis (single): reachable" in cluster["facts"]
        assert cluster["ws"].split("\n")[:3] == ["#1", "127.0.0.4:8080",
                                                  "0 online + 0 handed out, weight 1: load 0"]
        assert cluster["gateways_by"] == "the connections this daemon pushes through"
        # One alloc server: sharing is on (the default) but nobody else hands out, so unsaid.
        assert "shared" not in cluster["facts"] and "held" not in cluster["facts"]
        assert cluster["fits"], "the cluster view scrolls sideways"

        def refresh_in_the_background() -> dict[str, Any]:
            # While the operator types further down, a refresh keeps the focus and the scroll.
            users = browser.find_element(By.ID, "users")
            browser.execute_script("arguments[0].scrollIntoView(); arguments[0].focus()", users)
            scrolled = browser.execute_script("return window.scrollY")
            updated = text_of(browser, "cluster-updated")
            WebDriverWait(browser, WAIT).until(
                lambda d: text_of(d, "cluster-updated") != updated)
            return {"scrolled": scrolled, "now": browser.execute_script("return window.scrollY"),
                    "focused": browser.execute_script("return document.activeElement.id")}

        kept = await in_thread(refresh_in_the_background)
        assert kept["scrolled"] > 0 and kept["now"] == kept["scrolled"]
        assert kept["focused"] == "users"

        def look_up() -> dict[str, Any]:
            fill(browser, "lookup-user", f"{DEMO_USER_PREFIX}0")
            browser.find_element(By.ID, "lookup").click()
            WebDriverWait(browser, WAIT).until(
                lambda d: len(rows_of(d, "#routes-body tr.route-row")) == 3)
            return {"said": text_of(browser, "lookup-said"),
                    "rows": rows_of(browser, "#routes-body tr.route-row"),
                    "visible": in_viewport(browser, selector="#routes-body tr"),
                    "fits": fits(browser), "shot": shoot(browser, "user", size)}

        user = await in_thread(look_up)
        assert user["said"] == (f"{DEMO_USER_PREFIX}0: online on 1 client type; 2 routes and 1"
                                " unusable entry in Redis.")
        mobile, pc, bad = user["rows"]
        assert mobile[:6] == ["Mobile (Android/iOS)", "online", a.cs_address, a.address,
                              "android", "1.0.0"]
        assert pc[:5] == ["PC (Windows/Mac/Linux)", "offline", a.cs_address, a.address,
                          "windows"]
        assert bad == ["Unusable entry (field 3)", 'malformed: not JSON; the entry is {"host": 5']
        assert user["visible"], "the first route is off-screen"
        assert user["fits"], "the user view scrolls sideways"

        def push() -> dict[str, Any]:
            fill(browser, "users", f"{DEMO_USER_PREFIX}0, {DEMO_USER_PREFIX}1, nobody")
            browser.find_element(By.ID, "send").click()
            rows = wait_for_rows(browser, 4)
            return {"rows": rows, "summary": text_of(browser, "summary"),
                    "summary_visible": in_viewport(browser, "summary"),
                    "row_visible": in_viewport(browser, selector="#results-body tr"),
                    "fits": fits(browser), "shot": shoot(browser, "push", size),
                    "severe": severe(browser)}

        pushed = await in_thread(push)
        assert [r[:3] for r in pushed["rows"]] == [
            [f"{DEMO_USER_PREFIX}0", "Mobile (Android/iOS)", "success"],
            [f"{DEMO_USER_PREFIX}0", "PC (Windows/Mac/Linux)", "offline"],
            [f"{DEMO_USER_PREFIX}1", "Mobile (Android/iOS)", "success"],
            ["nobody", "—", "offline"]]
        assert pushed["summary"] == ("2 delivered, 2 offline (1 route without a connection;"
                                     " 1 no route in Redis).")
        assert pushed["summary_visible"], "the summary beside the button is off-screen"
        assert pushed["row_visible"], "the first result is off-screen"
        assert pushed["fits"], "the push outcome scrolls sideways"
        # No console error so far: no favicon 404, no refused request, no script error.
        assert pushed["severe"] == []

        def refused() -> dict[str, Any]:
            fill(browser, "timeout", "5")
            browser.find_element(By.ID, "send").click()
            text = wait_for_error(browser)
            timeout = browser.find_element(By.ID, "timeout")
            return {"text": text, "error_visible": in_viewport(browser, "error"),
                    "at_field": text_of(browser, "timeout-error"),
                    "focused": browser.execute_script("return document.activeElement.id"),
                    "outline": timeout.value_of_css_property("outline-color"),
                    "fits": fits(browser), "shot": shoot(browser, "refused", size),
                    "severe": severe(browser)}

        refusal = await in_thread(refused)
        words = "“Timeout (ms)” must be between 1000 and 86400000, got 5"
        assert refusal["text"] == "Refused (400 Bad Request):\n" + words
        assert refusal["at_field"] == words
        assert refusal["error_visible"], "the refusal beside the button is off-screen"
        assert refusal["focused"] == "timeout" and refusal["outline"] in RED
        assert refusal["fits"], "the refused push scrolls sideways"
        # The only console error: chromium's line for the refused request itself.
        assert len(refusal["severe"]) == 1 and "/push" in refusal["severe"][0]
        assert "400" in refusal["severe"][0]
        for view in (cluster, user, pushed, refusal):
            assert view["shot"].stat().st_size > 10_000


# -- what issue 10 added, from fixed documents: held servers, shared handouts, UDP ------------


def server_json(position: int, address: str, **fields: Any) -> dict[str, Any]:
    """A ``/cluster`` server row as docs/api.md shows one; ``fields`` override."""
    row = {"position": position, "address": address, "publicIp": address.split(":")[0],
           "weight": 1.0, "online": 2.0, "handedOut": 1, "load": 3.0, "allocated": 41,
           "sharedHandedOut": 0, "registeredAddress": address, "zkNodes": ["n1"],
           "knownSince": "2025-05-02T08:14:03.512Z", "held": False, "heldSecondsLeft": None}
    row.update(fields)
    return row


REFRESHED = {"at": "2025-05-02T08:20:11.002Z", "ok": True, "ageSeconds": 3.2, "error": None,
             "stale": False, "refreshes": 380, "failures": 0}
#: Two alloc servers share handouts; two of three connection servers left in a mass drop.
HELD_CLUSTER = {
    "connectionServers": [
        server_json(1, "10.0.0.6:3000", handedOut=1, sharedHandedOut=2, load=5.0),
        server_json(2, "10.0.0.7:3000", online=4.0, handedOut=0, load=4.0, held=True,
                    heldSecondsLeft=12.4, registeredAddress=None, zkNodes=[],
                    knownSince=None),
        server_json(3, "10.0.0.8:3000", online=6.0, handedOut=0, load=6.0, held=True,
                    heldSecondsLeft=11.2, registeredAddress=None, zkNodes=[],
                    knownSince=None)],
    "websocket": {"servers": [server_json(1, "10.0.0.6:8080", handedOut=0, load=2.0)],
                  "serving": True, "lastRefresh": REFRESHED},
    "draining": False, "serving": True,
    "gatewayServers": [{"address": "10.0.0.6:3001", "connections": 1,
                        "configuredConnections": 1, "pending": 0, "unanswering": 0,
                        "lastError": None}],
    "zookeeper": {"state": "connected", "sessionId": "0x100004b4bcc0000", "initialized": True,
                  "connectionServers": 1, "gatewayServers": 1, "websocketServers": 1,
                  "lastError": None},
    "redis": {"mode": "single", "reachable": True, "lastError": None},
    "lastRefresh": REFRESHED}
HELD_HEALTH = {
    "status": "degraded", "reasons": ["connection servers held after a mass drop: 2"],
    "allocation": {"handoutSharing": {"lastExchangeAgeSeconds": 0.2, "lastError": None,
                                      "exchanges": 40, "failures": 0}},
    "gateways": {"transport": "udp", "datagrams": {
        "sent": 120, "received": 117, "dropped": {"unknown_sender": 0, "malformed": 0,
                                                  "unmatched": 2},
        "refused": {"too_large": 1, "send_failed": 0}}}}


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)],
                         ids=["laptop", "phone"])
@pytest_twisted.ensureDeferred
async def test_held_servers_websocket_servers_shared_handouts_and_udp_in_words(
    browser: WebDriver, width: int, height: int,
) -> None:
    site = make_site(FakePushClient())
    for name, document in ((b"cluster", HELD_CLUSTER), (b"health", HELD_HEALTH)):
        site.resource.putChild(name, FixedJson(document))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/index.html"

    def drive() -> dict[str, Any]:
        fresh_log(browser)
        viewport(browser, width, height)
        browser.get(url)
        wait_for_cluster(browser, lambda d: len(bars(d)) == 3 and text_of(d, "gs-datagrams"))
        servers = browser.find_elements(By.CSS_SELECTOR, "#cs-list li.server")
        return {
            "words": [li.find_element(By.CSS_SELECTOR, ".words").text for li in servers],
            "notes": [li.find_element(By.CSS_SELECTOR, ".note").text for li in servers],
            "facts": [li.text for li in browser.find_elements(By.CSS_SELECTOR,
                                                                 "#cluster-facts li")],
            "ws": bars(browser, "ws-list"),
            "gateways_by": text_of(browser, "gs-sub"),
            "datagrams": text_of(browser, "gs-datagrams"),
            "gateways": rows_of(browser, "#gs-body tr"),
            "links": text_of(browser, "gs-links"),
            "fits": fits(browser),
            "note_colour": servers[1].find_element(By.CSS_SELECTOR, ".note")
            .value_of_css_property("color"),
            "shot": shoot(browser, "held", f"{width}x{height}"),
            # The WebSocket servers and the gateways over UDP, further down.
            "udp_shot": scrolled_shot(browser, "ws-part", "udp", f"{width}x{height}"),
            "severe": severe(browser),
        }

    try:
        seen = await in_thread(drive)
    finally:
        await port.stopListening()
    assert seen["words"] == [
        "2 online + 1 handed out + 2 by other alloc servers, weight 1: load 5",
        "4 online + 0 handed out, weight 1: load 4",
        "6 online + 0 handed out, weight 1: load 6"]
    assert seen["notes"][1:] == [
        "held after a mass drop: it left ZooKeeper with most of the servers at once; still"
        f" handed out for {left} s more, or until it registers again" for left in (13, 12)]
    assert seen["facts"][3:] == [
        "2 servers held after a mass drop: most of the servers left ZooKeeper at once (often a"
        " ZooKeeper glitch), so they are still handed out until they register again, 13 s at"
        " most.",
        "Handouts shared with the other alloc servers through Redis: each load counts theirs"
        " too (last exchange 0.2 s ago)."]
    assert seen["ws"] == ["10.0.0.6:8080"]
    assert seen["gateways_by"] == "reached over UDP: one datagram per push, no connection to keep"
    assert seen["datagrams"] == ("Datagrams since this daemon started: 120 sent, 117 received;"
                                 " 2 ignored (2 late or unmatched), 1 not sent (1 too large).")
    assert seen["links"] == "DATAGRAMS"  # the heading's CSS writes it in capitals
    assert seen["gateways"][0][:3] == ["10.0.0.6:3001", "up", "can be sent"]
    assert seen["fits"], "the cluster view scrolls sideways"
    assert seen["severe"] == []
    assert seen["note_colour"] in AMBER, "a hold is a warning, not a failure"
    assert seen["shot"].stat().st_size > 10_000 and seen["udp_shot"].stat().st_size > 10_000
