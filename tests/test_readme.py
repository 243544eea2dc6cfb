"""The README's two commands are what a new user and CI run: keep them and .ci/run in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_starts_with_install_and_demo_then_tests():
    first, second = _bash_blocks()[:2]
    assert first.strip().endswith("calcium-dask demo") and "uv pip install" in first
    assert second.strip().endswith("python -m pytest") and "requirements.lock" in second
    # workers import numba, xarray and pandas: without .pyc files (PYTHONDONTWRITEBYTECODE)
    # every process compiled them from source, seconds per worker start
    assert all("uv pip install --compile-bytecode" in block for block in (first, second))


def test_ci_runs_the_readme_test_command():
    test_command = _bash_blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_lock_file_pins_the_resolved_stack():
    lock = (ROOT / "requirements.lock").read_text()
    for pkg in ("dask", "distributed", "xarray", "zarr", "numpy", "s3fs", "moto", "botocore"):
        assert re.search(rf"^{pkg}==\S+", lock, flags=re.M), pkg
