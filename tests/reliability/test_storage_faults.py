"""Storage faults: unwritable outputs, outputs that hold something else, flaky object storage.

The CLI runs in this process (``main([...])``) against the session's cluster
(``--scheduler``), so no test pays for a cluster start. Faulty storage comes from
``tests/reliability/_faultfs.py``: ``rofile://`` (read-only, also for root) and ``flaky://``
(on the workers, the 1st, 6th, 11th... file opened fails on its first read with a connection
reset; the client process reads without faults, so the faults hit the distributed reads).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from calcium_dask import StoreError
from calcium_dask.cli import main
from calcium_dask.pipeline import run_pipeline
from calcium_dask.compute import set_quiet
from calcium_dask.store import ResultsStore

from ._faultfs import FAIL_EVERY, RegisterFaultFS, failures, register
from .conftest import PARAMS, assert_same_results, snapshot


@pytest.fixture(scope="module")
def cluster(client):
    """The session's cluster, with the fault-injecting filesystems known to every worker."""
    register()
    client.register_plugin(RegisterFaultFS())
    return client


@pytest.fixture
def cli(cluster, params_file, capsys):
    """Run ``calcium-dask run ...`` in this process; returns (exit code, stderr)."""
    def run(movie: str, out: str, *extra: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            main(["run", movie, "--out", out, "--params", str(params_file), "--scheduler",
                  cluster.scheduler.address, "--quiet", *extra])
        except SystemExit as e:
            code = int(e.code or 0)
        else:  # pragma: no cover - main always exits
            code = 0
        finally:
            set_quiet(False)
        return code, capsys.readouterr().err
    return run


def _one_error_line(err: str) -> str:
    lines = [s for s in err.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("calcium-dask: error: "), err[-2000:]
    return lines[0]


def _stages(out: str | Path) -> set[str]:
    store = ResultsStore(str(out))
    return set(store.stages()) if store.exists() else set()


# -- unwritable output -------------------------------------------------------------------------
def test_out_under_a_regular_file(cli, sim_small, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    code, err = cli(str(sim_small), str(blocker / "out.zarr"))
    line = _one_error_line(err)
    assert code == 2 and "not-a-dir" in line and "Not a directory" in line, line
    assert blocker.read_text() == "a file where a folder should be"


def test_out_on_read_only_storage(cli, sim_small, tmp_path):
    """A read-only mount (works as root, whom chmod does not stop)."""
    target = tmp_path / "ro"
    target.mkdir()
    code, err = cli(str(sim_small), f"rofile://{target}/out.zarr")
    line = _one_error_line(err)
    assert code == 2 and "Read-only file system" in line, line
    assert list(target.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions (see the rofile:// test)")
def test_out_in_a_read_only_directory(cli, sim_small, tmp_path):  # pragma: no cover - not root in CI
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    try:
        code, err = cli(str(sim_small), str(target / "out.zarr"))
    finally:
        target.chmod(0o755)
    assert code == 2 and "Permission denied" in _one_error_line(err)
    assert list(target.iterdir()) == []


@pytest.fixture
def full_disk(cluster):
    """A disk with room for the store's metadata but not for the corrected movie (per process)."""
    plugin = RegisterFaultFS(capacity=DISK_BYTES)
    cluster.register_plugin(plugin)
    register(capacity=DISK_BYTES)
    yield
    cluster.register_plugin(RegisterFaultFS())
    register()


DISK_BYTES = 2**20  # the corrected movie alone is 300 x 96 x 96 x 4 = 11 MB


def test_full_disk_fails_clearly_then_resumes(cli, full_disk, cluster, reference, sim_small, tmp_path):
    """ENOSPC: one line, exit 2, nothing marked complete; once there is room, a rerun finishes."""
    out = tmp_path / "out.zarr"
    code, err = cli(str(sim_small), f"fullfs://{out}")
    line = _one_error_line(err)
    assert code == 2 and "No space left on device" in line, line
    assert _stages(out) == set()
    cluster.register_plugin(RegisterFaultFS())  # room again
    register()
    code, err = cli(str(sim_small), f"fullfs://{out}")
    assert code == 0, err[-2000:]
    assert_same_results(snapshot(str(out)), reference.arrays)


# -- output that holds something else ----------------------------------------------------------
def _non_store_dir(path: Path) -> None:
    path.mkdir()
    (path / "thesis.txt").write_text("three years of work")


def _foreign_zarr(path: Path) -> None:
    g = zarr.open_group(str(path), mode="w")
    g.create_array("footprints", data=np.arange(6.0).reshape(2, 3))
    g.attrs["owner"] = "another tool"


def _zarr_array(path: Path) -> None:
    zarr.open_array(str(path), mode="w", shape=(4, 4), dtype="f4")[:] = 1.0


def _file(path: Path) -> None:
    path.write_text("not a folder")


@pytest.mark.parametrize("make", [_non_store_dir, _foreign_zarr, _zarr_array],
                         ids=["folder-of-files", "foreign-zarr-group", "zarr-array"])
def test_out_holding_something_else_is_refused(cluster, sim_small, tmp_path, make):
    out = tmp_path / "out"
    make(out)
    before = sorted(p.name for p in out.iterdir())
    set_quiet(True)
    try:
        with pytest.raises(StoreError):
            run_pipeline(str(sim_small), str(out), PARAMS, until="motion")
    finally:
        set_quiet(False)
        assert sorted(p.name for p in out.iterdir()) == before


@pytest.fixture
def other_movie(tmp_path) -> Path:
    """Another input: 80 frames of 48x48 noise around a smooth background."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:48, :48]
    path = tmp_path / "other.npy"
    np.save(path, rng.poisson(300 + 40 * np.sin(yy / 7) * np.cos(xx / 9), size=(80, 48, 48)).astype(np.uint16))
    return path


def test_store_from_another_input_is_refused_unless_force(cli, reference, other_movie, tmp_path):
    out = tmp_path / "ref-copy.zarr"
    shutil.copytree(reference.url, out)
    code, err = cli(str(other_movie), str(out))
    line = _one_error_line(err)
    assert code == 2 and "another input" in line and "--force" in line, line
    assert _stages(out) == {"motion", "cnmf", "evaluate"}  # untouched
    code, err = cli(str(other_movie), str(out), "--force", "--until", "motion")
    assert code == 0, err[-2000:]
    assert _stages(out) == {"motion"}
    assert ResultsStore(str(out)).read("motion").sizes["frame"] == 80


def test_force_start_over_leaves_no_units_of_the_old_run(cli, reference, other_movie, tmp_path):
    from calcium_dask.results import open_results

    out = tmp_path / "ref-copy.zarr"
    shutil.copytree(reference.url, out)
    code, err = cli(str(other_movie), str(out), "--force", "--until", "motion")
    assert code == 0, err[-2000:]
    assert "footprints" not in ResultsStore(str(out)).read()
    with pytest.raises(StoreError):
        open_results(str(out))


def test_out_that_is_a_file_exits_2_and_keeps_it(cli, sim_small, tmp_path):
    out = tmp_path / "results.zarr"
    _file(out)
    code, err = cli(str(sim_small), str(out))
    line = _one_error_line(err)
    assert code == 2 and "a file, not a calcium-dask results store" in line, line
    assert out.read_text() == "not a folder"


# -- flaky object storage ----------------------------------------------------------------------
@pytest.fixture
def flaky(cluster):
    """Faults on the workers' reads of ``flaky://`` (counts reset), none in this process."""
    cluster.register_plugin(RegisterFaultFS(fail_every=FAIL_EVERY))
    yield
    injected = sum(cluster.run(failures).values())
    cluster.register_plugin(RegisterFaultFS())
    assert injected >= 1, "no fault was injected: the test did not test anything"


def test_flaky_reads_fail_with_one_clear_line_or_succeed(cli, flaky, reference, sim_small, tmp_path):
    """Transient read errors end the run with one line and exit 2, and nothing looks complete."""
    out = tmp_path / "flaky.zarr"
    code, err = cli(f"flaky://{sim_small}", str(out))
    if code == 0:  # retried: the same results as an undisturbed run
        assert_same_results(snapshot(str(out)), reference.arrays)
        return
    line = _one_error_line(err)
    assert code == 2 and "Connection reset by peer" in line, line
    assert "motion" not in _stages(out)


def test_transient_read_errors_are_retried(cli, flaky, reference, sim_small, tmp_path):
    out = tmp_path / "flaky.zarr"
    code, err = cli(f"flaky://{sim_small}", str(out))
    assert code == 0, err[-2000:]
    assert_same_results(snapshot(str(out)), reference.arrays)
