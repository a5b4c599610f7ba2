"""The web page of `bt serve` in a real browser: Debian's chromium driven by playwright.

Open `/`, enter the token, queue a run from the form, watch its log stream in while it runs and
it reach `completed`, then look at the run page and the runs table at desktop and phone sizes.
Screenshots are saved under tmp_path (look at them when changing the page).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.queue_support import QueueLab, lab_for
from tests.serve_support import Server, chromium_path, start_server, write_scripts

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 90_000
MISSING = "\u2013"  # what the page shows for a missing value (an en dash)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[QueueLab, Server]]:
    with lab_for(tmp_path) as lab:
        write_scripts(lab.cwd)
        yield lab, start_server(lab)


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_run_from_the_page_with_live_log(
    served: tuple[QueueLab, Server], browser: Any, tmp_path: Path
) -> None:
    lab, server = served
    gate = lab.gate("page")
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    failed_requests: list[str] = []
    page.on("requestfailed", lambda request: failed_requests.append(request.url))
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

    page.goto(server.url + "/")
    page.wait_for_selector("#login:not([hidden])")
    page.screenshot(path=str(tmp_path / "login-desktop.png"))
    page.fill("#token", "not-the-token-at-all")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:text('not this server')")
    page.fill("#token", server.token or "")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#runs")

    page.click("a[href='#/new']")
    page.fill("#script", "talker.py")
    page.fill(".param-key", "lines")
    page.fill(".param-value", "12")
    page.click("#add-param")
    page.locator(".param-key").nth(1).fill("every")
    page.locator(".param-value").nth(1).fill("0.05")
    page.click("#add-param")
    page.locator(".param-key").nth(2).fill("gate")
    page.locator(".param-value").nth(2).fill(str(gate))
    page.fill("#label", "from the page")
    page.screenshot(path=str(tmp_path / "new-run-desktop.png"))
    page.click("#submit-run")

    # The run page: the log streams in while the run is still running (held by the gate).
    page.wait_for_url("**/#/run/*", timeout=WAIT_MS)
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#log:has-text('line 12 of 12')", timeout=WAIT_MS)
    page.wait_for_selector("#run-status:text-is('running')", timeout=WAIT_MS)
    assert "streaming" in page.inner_text("#log-state")
    gate.touch()
    page.wait_for_selector("#run-status:text-is('completed')", timeout=WAIT_MS)
    page.wait_for_selector("#log:has-text('done')", timeout=WAIT_MS)
    page.wait_for_selector("#log-state:has-text('run finished')", timeout=WAIT_MS)
    page.wait_for_selector("#files td:has-text('trades.csv')", timeout=WAIT_MS)
    page.wait_for_selector("#validation .verdict.ok", timeout=WAIT_MS)
    log_text = page.inner_text("#log")
    for number in range(1, 13):
        assert f"line {number} of 12" in log_text
    assert log_text.count("line 1 of 12") == 1  # nothing repeated
    page.screenshot(path=str(tmp_path / "run-desktop.png"), full_page=True)

    # What the page showed is what the API says.
    with server.client() as client:
        status = client.get(f"/api/backtest/status/{run_id}").json()
    assert status["status"] == "completed"
    assert status["label"] == "from the page"
    assert status["params"] == {"lines": "12", "every": "0.05", "gate": str(gate)}

    # The runs table lists it, refreshed on its own.
    page.click("a[data-nav='runs']")
    page.wait_for_selector(f"#runs tr[data-run='{run_id}'] .badge.completed", timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "runs-desktop.png"), full_page=True)

    # A phone: no sideways scrolling of the page itself.
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/#/run/{run_id}")
    page.wait_for_selector("#run-status:text-is('completed')", timeout=WAIT_MS)
    page.wait_for_selector("#log:has-text('done')", timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "run-phone.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px phone"
    page.goto(f"{server.url}/#/")
    page.wait_for_selector(f"#runs tr[data-run='{run_id}']", timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "runs-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # Everything came from this server (no CDN), and nothing failed but what the test aborted.
    assert not [url for url in failed_requests if not url.startswith(server.url)]
    # (401: the wrong token tried above.)
    assert not [text for text in console_errors if "401" not in text and "501" not in text]
    context.close()


def test_page_signs_in_with_the_token_and_keeps_it_for_the_tab(
    served: tuple[QueueLab, Server], browser: Any
) -> None:
    _lab, server = served
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#token", server.token or "")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#runs")
    assert page.evaluate("sessionStorage.getItem('bt-serve-token')") == server.token
    assert page.evaluate("localStorage.length") == 0  # never kept beyond the tab
    page.reload()
    page.wait_for_selector("#runs")  # no second sign-in in the same tab
    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('bt-serve-token')") is None
    context.close()


PLOT = {
    "runs": [
        {
            "run_id": "RUN",
            "dates": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"],
            "cumulative_pnl": [100.0, 50.0, 250.0, 275.5, 265.5],
            "drawdown": [0.0, -50.0, 0.0, 0.0, -10.0],
        }
    ]
}


def _compare(run_ids: list[str]) -> dict[str, Any]:
    rows = []
    for index, run_id in enumerate(run_ids):
        rows.append(
            {
                "run_id": run_id,
                "label": f"ma-{index}",
                "status": "completed",
                "sweep_id": "sweep_0badf00d",
                "params": {"fast": str(5 * (index + 1))},
                "metrics": {"total_pnl": [120.0, 340.5, None][index], "sharpe_ratio": 1.0 + index},
                "duration_seconds": 1.5,
            }
        )
    return {"params": ["fast"], "metrics": ["total_pnl", "sharpe_ratio"], "runs": rows}


def test_equity_curve_and_sweep_table_from_their_endpoints(
    served: tuple[QueueLab, Server], browser: Any, tmp_path: Path
) -> None:
    """The plot and compare endpoints come with `bt plot`/`bt compare`: answered here by the
    browser's network layer in their JSON shapes, to check what the page makes of them."""
    _lab, server = served
    with server.client() as client:
        run_ids = []
        for _ in range(3):
            answer = client.post("/api/backtest/run", json={"script": "valid.py"})
            run_ids.append(answer.json()["run_id"])
        for run_id in run_ids:
            server.wait_status(client, run_id, ("completed",))
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.route(
        "**/api/backtest/plot/*",
        lambda route: route.fulfill(
            json={**PLOT, "runs": [{**PLOT["runs"][0], "run_id": run_ids[0]}]}
        ),
    )
    page.route("**/api/backtest/compare?*", lambda route: route.fulfill(json=_compare(run_ids)))
    page.goto(server.url + "/")
    page.fill("#token", server.token or "")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#runs")

    page.goto(f"{server.url}/#/run/{run_ids[0]}")
    page.wait_for_selector("#equity svg polyline.curve", timeout=WAIT_MS)
    points = page.get_attribute("#equity svg polyline.curve", "points") or ""
    assert len(points.split()) == 5
    assert page.locator("#equity svg polygon.dd").count() == 1
    assert "2024-01-05" in page.inner_text("#equity")
    page.screenshot(path=str(tmp_path / "equity-desktop.png"), full_page=True)

    page.goto(f"{server.url}/#/sweep/sweep_0badf00d")
    page.wait_for_selector("#compare tbody tr", timeout=WAIT_MS)

    def column(name: str) -> list[str]:
        headers = page.locator("#compare thead th").all_text_contents()
        index = headers.index(name)
        cells = page.locator(f"#compare tbody tr td:nth-child({index + 1})")
        return [text.strip() for text in cells.all_inner_texts()]

    assert column("fast") == ["5", "10", "15"]
    page.click("#compare thead th:text-is('total_pnl')")
    assert column("total_pnl") == ["120", "340.5", MISSING]  # missing values last
    page.click("#compare thead th:has-text('total_pnl')")
    assert column("total_pnl") == ["340.5", "120", MISSING]
    assert column("fast") == ["10", "5", "15"]
    page.screenshot(path=str(tmp_path / "sweep-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(tmp_path / "sweep-phone.png"), full_page=True)
    context.close()
