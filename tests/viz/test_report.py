"""write_report: one self-contained HTML file, every section present or replaced by a note."""

from __future__ import annotations

import re

import pytest

from calcium_dask.errors import StoreError
from calcium_dask.store import ResultsStore
from calcium_dask.viz import write_report
from calcium_dask.viz.report import SECTIONS

CNMF_SECTIONS = ("components", "viewer", "traces", "dff", "metrics")


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S))


def test_full_report_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    assert list(report.parent.iterdir()) == [report]  # a single file
    for s in SECTIONS:
        assert f"<h2>{s.title}</h2>" in page.replace("&amp;", "&")
    assert page.count('<img src="data:image/png;base64,') >= 8
    assert not re.search(r"<script[^>]*\bsrc=[\"']?https?://", page)
    assert not re.search(r"<link[^>]*\bhref=[\"']?https?://", page)
    assert "Bokeh" in page and 'class="note"' not in page
    for needle in ("sim/movie.tif", "100 x 32 x 32", "10 Hz", "min_SNR", "rval_thr", "frames_per_s", "6.25"):
        assert needle in page


def test_motion_only_report_notes_cnmf_sections(motion_only_store, tmp_path):
    page = write_report(motion_only_store.url, tmp_path / "sub" / "r.html", max_traces=5).read_text()
    found = sections(page)
    assert list(found) == [s.id for s in SECTIONS]
    for sid in CNMF_SECTIONS:
        assert 'class="note"' in found[sid] and "<img" not in found[sid]
    for sid in ("summary", "shifts", "patch-grid", "quilt"):
        assert "data:image/png;base64," in found[sid]
    assert "could not draw" not in page


def test_unevaluated_report_notes_evaluation(unevaluated_store, tmp_path):
    found = sections(write_report(unevaluated_store, tmp_path / "r.html", max_traces=2).read_text())
    assert "evaluation" in found["metrics"] and 'class="note"' in found["metrics"]
    assert "The first 2 (evaluation not run yet) units" in found["traces"]
    assert 'class="note"' in found["dff"]


def test_empty_store_gives_only_notes(tmp_path):
    store = ResultsStore(str(tmp_path / "empty.zarr"))
    store.root()  # an empty group: a run that has not finished any stage
    found = sections(write_report(store.url, tmp_path / "r.html").read_text())
    assert all('class="note"' in body and "<img" not in body for body in found.values())
    with pytest.raises(StoreError, match="no results store"):
        write_report(str(tmp_path / "missing.zarr"), tmp_path / "r2.html")


def test_a_failing_view_costs_one_section(store, tmp_path, monkeypatch):
    from calcium_dask.viz import static

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(static, "plot_shifts", broken)
    with pytest.warns(UserWarning, match="Motion shifts"):
        found = sections(write_report(store.url, tmp_path / "r.html", max_traces=1).read_text())
    assert "could not draw this section (RuntimeError: boom)" in found["shifts"]
    assert "data:image/png;base64," in found["summary"] and "data:image/png;base64," in found["traces"]
