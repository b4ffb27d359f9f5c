"""The live dashboard in a real headless Chromium (Debian's chromium, driven by selenium through
chromium-driver): it loads with no console errors, shows HEALTH_OK, the file system with its
active and standby MDS and a mount's session, turns to HEALTH_WARN naming the OSD within
seconds of `cluster kill osd.1`, and back once it returns; screenshots of each state are
written for a person to look at (.artifacts/dashboard-*.png). And it is read-only
until signed in with a key the monitors accept."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import launcher
from rados_py.auth import Keyring
from rados_py.rados import Rados
from tests.integration import random_base_port, running_cluster
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium is missing: run ./scripts/setup")
if not (CHROMIUM and DRIVER):
    pytest.skip("SKIPPED LOUDLY: chromium and chromium-driver are not installed (apt-get "
                "install chromium chromium-driver; ./scripts/setup does it as root)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("dash") / "cluster", osds=3, pool="data",
                         mdss=2,
                         settings={"osd_heartbeat_interval": 0.3, "osd_heartbeat_grace": 1.5,
                                   "osd_beacon_interval": 0.3, "mds_beacon_interval": 0.3,
                                   "mon_osd_report_grace": 3.0}) as c:
        asyncio.run(c.create_fs())
        offset = c.config.metrics_port_offset
        port = launcher.pick_ports(1, random_base_port() + 300, offset)[0]
        with open(c.conf, "a") as f:
            f.write(f"\n[mgr.a]\nmgr_dashboard_port = {port}\n")
        c.start_mgrs(timeout=60)
        yield c


def url_of(cluster: launcher.LocalCluster) -> str:
    info = cluster.dashboard_info()
    assert info is not None and info["running"], info
    return info["url"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
                "--window-size=1440,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text(browser: Any, element_id: str) -> str:
    return browser.find_element("id", element_id).text


def console_errors(browser: Any) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def screenshot(browser: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    browser.save_screenshot(str(path))
    print(f"\n[dashboard] screenshot: {path}")
    return path


async def with_a_mount(cluster: launcher.LocalCluster, check: Any) -> None:
    """Run `check` (blocking) while a file system client holds a session, as a mount does."""
    from mds.client.mdsclient import MdsClient

    async with Rados(cluster.config) as r:
        client = MdsClient(r)
        await client.start()
        try:
            await asyncio.to_thread(check)  # the session's stream goes on meanwhile
        finally:
            await client.close()


def test_the_page_follows_an_osd_down_and_back(cluster: launcher.LocalCluster,
                                               browser: Any) -> None:
    browser.get(url_of(cluster))
    wait_for(lambda: text(browser, "health") == "HEALTH_OK", 60, "HEALTH_OK on the page")
    assert text(browser, "live") == "LIVE"

    async def traffic() -> None:  # something for the throughput plot
        async with Rados(cluster.config) as r:
            io = await r.open_ioctx("data")
            for i in range(40):
                await io.write_full(f"dash-{i}", b"d" * 256 * 1024)
                await io.read(f"dash-{i}")
    asyncio.run(traffic())
    wait_for(lambda: "osd.2" in text(browser, "osds") and "mon.a" in text(browser, "mons"),
             30, "OSDs and monitors listed")
    wait_for(lambda: browser.find_elements("css selector", "#chart path.series"), 30,
             "the throughput plot drawn")
    assert "data" in text(browser, "pools")
    wait_for(lambda: "loligofs" in text(browser, "filesystems")
             and "active (rank 0)" in text(browser, "mdss")
             and "standby" in text(browser, "mdss"), 30,
             "the file system with an active and a standby MDS")
    asyncio.run(with_a_mount(cluster, lambda: wait_for(
        lambda: text(browser, "fs-summary").startswith("1 client")
        and "1 session ·" in text(browser, "mdss"), 30, "the mount's session on the page")))
    assert console_errors(browser) == []
    screenshot(browser, "ok")

    cluster.kill("osd.1")
    killed = time.monotonic()
    wait_for(lambda: text(browser, "health") == "HEALTH_WARN"
             and "osd.1" in text(browser, "checks"), 30,
             "HEALTH_WARN naming osd.1 on the page")
    seen_after = time.monotonic() - killed
    print(f"\n[dashboard] HEALTH_WARN naming osd.1 shown {seen_after:.1f} s after the kill")
    assert seen_after < 15, seen_after
    row = browser.find_element("css selector", "tr[data-osd='1']")
    wait_for(lambda: "down" in row.text or "down" in browser.find_element(
        "css selector", "tr[data-osd='1']").text, 10, "osd.1's row showing it down")
    wait_for(lambda: "osd.1 marked down" in text(browser, "events"), 10,
             "the event in the log")
    screenshot(browser, "osd-down")

    cluster.start(["osd.1"], timeout=60)
    wait_for(lambda: text(browser, "health") == "HEALTH_OK", 120,
             "HEALTH_OK again once osd.1 is back and recovered")
    assert "osd.1 boot" in text(browser, "events")
    screenshot(browser, "recovered")
    assert console_errors(browser) == []


def _call(url: str, body: dict[str, Any] | None = None, cookie: str = "",
          header: bool = True) -> tuple[int, dict[str, Any], str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None
                                     else "GET")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if header:
        request.add_header("X-Loligo-Dashboard", "1")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}"), resp.headers.get(
                "Set-Cookie", "")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), ""


def test_read_only_until_signed_in_with_a_key(cluster: launcher.LocalCluster) -> None:
    url = url_of(cluster)
    status, body, _ = _call(url + "api/action", {"action": "osd_out", "osd": 2})
    assert status == 403 and "read-only" in body["error"]
    wrong = base64.b64encode(b"x" * 32).decode()
    status, body, _ = _call(url + "api/login", {"entity": "client.admin", "key": wrong})
    assert status == 401, body
    key = base64.b64encode(Keyring.load(cluster.config.keyring).key("client.admin")).decode()
    status, body, set_cookie = _call(url + "api/login", {"entity": "client.admin", "key": key})
    assert status == 200 and body["entity"] == "client.admin"
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    cookie = set_cookie.split(";")[0]
    status, body, _ = _call(url + "api/action", {"action": "osd_out", "osd": 2},
                            cookie=cookie, header=False)
    assert status == 403, "an action needs the page's own header too"
    status, body, _ = _call(url + "api/action", {"action": "osd_out", "osd": 2},
                            cookie=cookie)
    assert status == 200, body

    def osd2_in() -> bool:
        state = json.loads(urllib.request.urlopen(url + "api/state", timeout=10).read())
        return next(o for o in state["osds"] if o["id"] == 2)["in"]
    wait_for(lambda: not osd2_in(), 30, "osd.2 out on the page")
    status, body, _ = _call(url + "api/action", {"action": "osd_in", "osd": 2}, cookie=cookie)
    assert status == 200, body
    wait_for(osd2_in, 30, "osd.2 in again")
    state = urllib.request.urlopen(url + "api/state", timeout=10).read().decode()
    assert key not in state and "secret" not in state, "the page never carries secrets"
