"""The demo notebooks (demo_pipeline.ipynb, and demo_pipeline_cnmfE.ipynb for one-photon movies)
run top to bottom and end with a sane summary."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "demo_pipeline.ipynb"
NOTEBOOK_CNMFE = NOTEBOOK.with_name("demo_pipeline_cnmfE.ipynb")
KERNEL = "calcium-dask-test"


def test_notebook_uses_only_the_public_api():
    """The notebook imports calcium-dask only as ``cd`` (and its views): every step is a
    public call, no internal module is reached into."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imports = re.findall(r"^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", code, re.M)
    ours = sorted({a or b for a, b in imports if (a or b).startswith("calcium_dask")})
    assert ours == ["calcium_dask"], ours
    assert "import calcium_dask as cd" in code and "from calcium_dask import viz" in code
    for step in ("cd.connect(", "cd.open_movie(", "cd.motion_correct(", "cd.cnmf.fit(", "cd.cnmf.refit(",
                 "cd.evaluate(", ".detrend_df_f(", ".select_components(", ".save(", "cd.open_results("):
        assert step in code, step


@pytest.mark.parametrize("path", [NOTEBOOK, NOTEBOOK_CNMFE], ids=["two-photon", "one-photon"])
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:80]


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch):
    """A kernelspec that runs ipykernel with this interpreter (the venv's), found first."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "calcium-dask test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


@pytest.mark.slow  # about 55 s on 2 cores: run by .ci/run with the docs, outside the default run
def test_demo_notebook_runs(tmp_path, kernel_of_this_python, monkeypatch):
    monkeypatch.setenv("CALCIUM_DASK_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("CALCIUM_DASK_WORKERS", "2")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel_of_this_python, timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    line = re.search(r"SUMMARY units=(\d+) accepted=(\d+) rejected=(\d+) frames=(\d+) max_shift=([\d.]+)", text)
    assert line, text[-2000:]
    units, accepted, rejected, frames, max_shift = (float(g) for g in line.groups())
    assert frames == 300 and units == accepted + rejected
    assert 8 <= accepted <= 30, line.group(0)  # 12 simulated neurons
    assert 0.5 < max_shift <= 6.0, line.group(0)  # the simulation moves; max_shifts bounds it
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "demo" / "movie.gif").exists()
    assert "'f1'" in text and float(re.search(r"'f1': ([\d.]+)", text).group(1)) >= 0.7


@pytest.mark.slow  # about 30 s on 2 cores
def test_cnmfe_notebook_runs(tmp_path, kernel_of_this_python, monkeypatch):
    monkeypatch.setenv("CALCIUM_DASK_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("CALCIUM_DASK_WORKERS", "2")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK_CNMFE, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel_of_this_python, timeout=400,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "ParamsError: method_init='corr_pnr'" in text  # the refused combination, in one line
    line = re.search(r"SUMMARY units=(\d+) accepted=(\d+) rejected=(\d+) frames=(\d+) max_shift=([\d.]+)", text)
    assert line, text[-2000:]
    units, accepted, rejected, frames, max_shift = (float(g) for g in line.groups())
    assert frames == 600 and units == accepted + rejected
    assert 14 <= accepted <= 30, line.group(0)  # 20 simulated neurons
    motion = re.search(r"motion: ([\d.]+) px RMSE \(no correction: ([\d.]+) px\)", text)
    assert float(motion.group(1)) < min(0.5, float(motion.group(2)))
    assert float(re.search(r"'f1': ([\d.]+)", text).group(1)) >= 0.7
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "One-photon seeding" in report and "correlation and PNR images" in report
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(pngs) >= 8  # the views drew (shifts, summary, seeding images, contours, metrics, traces)
