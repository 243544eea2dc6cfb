"""A fast start: the command line and ``import calcium_dask`` load no numerical stack until a
command or a name needs it (timings are measured by benchmarks/bench_startup.py)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "scipy", "dask", "distributed", "xarray", "zarr", "pandas", "numba", "cv2")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys; {code}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])  # noqa: S307 - our own list of names


def test_the_cli_and_the_package_import_nothing_heavy():
    assert _loaded_after("import calcium_dask.cli") == []
    assert _loaded_after("import calcium_dask") == []


def test_version_and_help_run_without_the_numerical_stack():
    code = ("from calcium_dask.cli import main\n"
            "for a in (['--version'], ['--help'], ['run', '--help']):\n"
            "    try: main(a)\n"
            "    except SystemExit as e: assert e.code == 0, e.code")
    assert _loaded_after(f"exec({code!r})") == []


def test_public_names_still_resolve_on_first_use():
    loaded = _loaded_after("import calcium_dask as cd; cd.Params; cd.open_movie")
    assert "numpy" in loaded and "xarray" in loaded  # the readers came with open_movie
    import calcium_dask as cd
    from calcium_dask.io import open_movie
    from calcium_dask.params import Params

    assert cd.open_movie is open_movie and cd.Params is Params
    assert {"open_movie", "Params", "cnmf", "connect"} <= set(dir(cd))


def test_the_modules_workers_warm_up_exist():
    """A worker imports them beside its start (a wrong name would only warm nothing)."""
    import importlib

    from calcium_dask.cluster import TASK_MODULES

    assert TASK_MODULES
    for name in TASK_MODULES:
        importlib.import_module(name)


def test_the_pipeline_client_does_not_load_what_only_kernels_use():
    """scipy.signal and scipy.stats cost ~1 s to import; the client process only builds
    graphs (the kernels that need them import them in the task); CNMF-E's modules load
    for a one-photon run only."""
    probe = ("import sys; import calcium_dask.pipeline, calcium_dask.fields; "
             "print(sorted(m for m in ('scipy.signal', 'scipy.stats', 'scipy.optimize', 'calcium_dask.cnmf.cnmfe') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_worker_server_starts_before_the_numerical_stack_loads():
    """``calcium-dask run`` launches its workers' fork server first thing: that costs this
    process Dask's configuration only (the server imports the rest, on another core)."""
    code = ("from calcium_dask import worker_server\n"
            "assert worker_server.start()\n"
            "import multiprocessing.forkserver as f\n"
            "assert f._forkserver._forkserver_pid")
    assert _loaded_after(f"exec({code!r})") == ["dask"]
