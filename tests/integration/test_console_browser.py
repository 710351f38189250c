"""The dispatcher console (派单台) end to end in headless Chromium: log in with a dispatcher
token, see the live queues, dispatch a manual order with one click, watch the page refresh by
itself, and check a screenshot is not blank.

Needs Debian's chromium (`/usr/bin/chromium`, installed by `.ci/run`) and the playwright Python
package (its bundled browsers are never downloaded). Under CI a missing browser fails the test;
outside CI it skips with a message.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from api.app import create_api
from api.auth import ROLE_DISPATCHER, issue_token
from hotline.bootstrap import App, bootstrap
from hotline.settings import PROJECT_ROOT, Settings
from models.lifecycle import LifecycleEvent, State
from models.tables import now_local
from streams.sample_day import build_sample_day
from tests.helpers import send_back_to_dispatcher
from tests.integration.conftest import service_unavailable

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
CHROMIUM_HOW = "install Debian's chromium (`apt-get install chromium`, as .ci/run does)"
SCREENSHOT = PROJECT_ROOT / "var" / "console-browser.png"


def chromium_path() -> str:
    path = os.environ.get("HOTLINE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        service_unavailable("Chromium", f"{path} not found", CHROMIUM_HOW)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    app: App
    url: str
    token: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import uvicorn

    db = Path(tmp_path_factory.mktemp("console")) / "console.db"
    app = bootstrap(Settings(database_url=f"sqlite:///{db}"), registry=CollectorRegistry())
    messages = [m for m in build_sample_day() if isinstance(m, dict) and "corpus_id" in m][:40]
    app.router.receive_batch(messages)
    send_back_to_dispatcher(app, 3)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(app), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    token = issue_token(app.store.engine, role=ROLE_DISPATCHER, name="王值班").token
    yield Served(app, f"http://127.0.0.1:{port}", token)
    server.should_exit = True
    thread.join(timeout=10)
    app.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_unavailable("playwright", str(exc), "pip install playwright (the dev extra)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _counter(page: Any, queue: str) -> int:
    return int(page.locator(f'.counter[data-queue="{queue}"] b').inner_text())


def test_console_dispatches_with_one_click_and_refreshes_itself(
    served: Served, browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page.goto(served.url + "/")
    page.fill("#token", served.token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector('[data-testid="dispatch-suggestion"]', timeout=15_000)
    assert "王值班" in page.inner_text("#who")
    manual_before = _counter(page, "manual")
    assert manual_before == len(served.app.store.queue("manual"))
    assert page.locator("#load tbody tr").count() >= 3  # load per unit
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert_not_blank(SCREENSHOT)

    # one click on the first suggestion of the first manual order
    row = page.locator("#q-manual .order").first
    order_id = row.get_attribute("data-order-id")
    button = row.locator('[data-testid="dispatch-suggestion"]').first
    unit = button.get_attribute("data-unit")
    button.click()
    page.wait_for_function(
        "id => !document.querySelector(`#q-manual .order[data-order-id='${id}']`)", arg=order_id,
        timeout=15_000,
    )
    assert "已派给" in page.inner_text("#toast")
    stored = served.app.store.get_order(str(order_id))
    assert stored is not None and stored.state == State.DISPATCHED.value
    assert stored.lead_unit == unit
    assert any(t.order_id == order_id and t.actor == "dispatcher:王值班"
               for t in served.app.store.training_labels())

    # a change made elsewhere shows up without reloading the page
    other = served.app.store.queue("manual")[0]
    target = next(u for u in served.app.router.config.unit_by_name if u not in other.returned_units)
    served.app.router.apply_event(LifecycleEvent(
        f"{other.id}:browser-test", other.id, "OrderDispatched", now_local(), "dispatcher:测试",
        {"unit": target, "manual": True, "by_dispatcher": True},
    ))
    page.wait_for_function(
        "n => Number(document.querySelector('.counter[data-queue=manual] b').textContent) === n",
        arg=manual_before - 2, timeout=15_000,
    )
    page.close()


def assert_not_blank(path: Path) -> None:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        gray = image.convert("L")
        variance = ImageStat.Stat(gray).var[0]
        colors = gray.getcolors(maxcolors=256 * 256) or []
    assert gray.size[0] >= 800
    assert variance > 200, f"screenshot looks blank (variance {variance:.1f})"
    assert len(colors) > 20
