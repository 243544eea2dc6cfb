"""The dashboard in a real browser (Debian's chromium through playwright): log in, submit, watch, report."""

from __future__ import annotations

import os

import pytest

from .conftest import live_server, make_harness

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")


@pytest.fixture
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        yield page, errors
        browser.close()


def test_log_in_submit_watch_it_finish_and_open_its_report(tmp_path, movie, client, browser_page):
    from calcium_dask.service.db import Database

    db = Database(f"sqlite:///{tmp_path / 'service.db'}")
    db.upgrade()
    h = make_harness(db, tmp_path, movie, client=client)
    page, errors = browser_page
    with live_server(h.service) as url:
        response = page.goto(url + "/")
        assert response.status == 401 and page.get_by_role("heading", name="Log in").is_visible()
        page.fill("#token", "not-a-token")
        page.click("#login-form button")
        page.get_by_text("this token is not valid").wait_for(timeout=10_000)
        page.fill("#token", h.token)
        page.click("#login-form button")
        page.wait_for_url(url + "/", timeout=10_000)
        page.get_by_role("heading", name="Submit a run").wait_for(timeout=10_000)

        page.evaluate("window.__sameDocument = true")  # gone if the page reloads
        page.fill("#input", str(movie))
        page.fill("#output", str(h.results / "browser.zarr"))
        page.fill("#name", "from the browser")
        page.fill("#params", '{"fr": 30, "K": 4}')
        page.click("#submit-form button")
        page.get_by_text("queued run 1").wait_for(timeout=10_000)
        row = page.locator('#runs tr[data-run-id="1"]')
        row.wait_for(timeout=10_000)
        assert row.locator("td").nth(1).inner_text() == "from the browser"
        page.locator('#runs tr[data-run-id="1"][data-state="running"]').wait_for(timeout=60_000)
        page.locator('#runs tr[data-run-id="1"][data-state="done"]').wait_for(timeout=180_000)
        assert page.evaluate("window.__sameDocument") is True  # the table updated itself
        bars = row.locator("progress")
        assert bars.count() == 3 and all(bars.nth(i).get_attribute("value") == "1" for i in range(3))
        assert int(row.locator("td").nth(7).inner_text()) > 0  # units

        with page.expect_popup() as popup:
            row.get_by_role("link", name="report").click()
        report = popup.value
        report.wait_for_load_state("load")
        # sandboxed (the report's own origin), its inline bokeh scripts still draw; their
        # canvases live in shadow roots, which playwright's locators look into
        report.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length >= 1", timeout=30_000)
        report.locator("canvas").first.wait_for(state="attached", timeout=30_000)
        assert report.evaluate("() => window.origin") == "null"  # no access to the dashboard's cookie

        page.goto(f"{url}/runs/1")
        page.locator('#stages tr[data-stage="evaluate"] .state-done').wait_for(timeout=10_000)
        page.locator("#images figure:not([hidden]) img").first.wait_for(timeout=10_000)
        # the four images load one by one: wait for the last, not only the first
        page.wait_for_function("() => [...document.querySelectorAll('#images img')]"
                               ".every(e => e.complete && e.naturalWidth > 0)", timeout=10_000)
        widths = page.eval_on_selector_all("#images img", "els => els.map(e => e.naturalWidth)")
        assert len(widths) == 4 and min(widths) == 64  # the movie's summary images
        assert "[event] done" in page.locator("#log").inner_text()

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(url + "/login", timeout=10_000)
        assert page.goto(url + "/").status == 401
    unexpected = [e for e in errors if "status of 401" not in e]  # the login page and a wrong token
    assert unexpected == [], unexpected
    db.close()
