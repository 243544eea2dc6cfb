"""The HTML report in a real browser: Debian's chromium driven by playwright, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")

# move every component viewer's slider to its last unit
MOVE_SLIDERS = """
() => {
  let moved = 0;
  for (const doc of Bokeh.documents) {
    const slider = doc.get_model_by_name("component_slider");
    if (slider !== null) { slider.value = slider.end; moved += 1; }
  }
  return moved;
}
"""
# the viewers' info texts (their CustomJS callback runs asynchronously)
INFO_TEXTS = """
() => Bokeh.documents.map(d => d.get_model_by_name("info")).filter(m => m !== null).map(m => m.text)
"""


@pytest.fixture(scope="module")
def page_report(report, tmp_path_factory):
    """Open the report; yield the page, its console errors and the URLs it requested."""
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(Path(report).as_uri(), wait_until="load")
        page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length >= 2", timeout=20000)
        page.locator("canvas").first.wait_for(state="attached", timeout=20000)
        page.wait_for_timeout(300)  # let bokeh finish painting
        yield page, errors, requests, tmp_path_factory.mktemp("screens")
        browser.close()


def test_report_renders_without_errors_or_network(page_report):
    page, errors, requests, _ = page_report
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []


def test_every_image_decodes(page_report):
    page = page_report[0]
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert len(widths) >= 6 and min(widths) > 0


def test_bokeh_plots_rendered(page_report):
    page = page_report[0]
    assert page.locator("canvas").count() >= 3  # contours, field of view, footprint, traces


def test_component_slider_switches_unit(page_report):
    page, errors = page_report[0], page_report[1]
    assert page.evaluate(MOVE_SLIDERS) == 1
    page.get_by_text("(2 of 2)").first.wait_for(timeout=5000)  # the rendered Div follows
    texts = page.evaluate(INFO_TEXTS)
    assert len(texts) == 1 and "unit 1" in texts[0] and "rejected" not in texts[0]
    assert errors == []


def test_screenshot_not_blank(page_report):
    from PIL import Image

    page, out = page_report[0], page_report[3] / "report.png"
    page.screenshot(path=str(out), full_page=True)
    img = Image.open(out).convert("RGB")
    assert img.height > 2000
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500
