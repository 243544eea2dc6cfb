"""Fixtures of the CNMF tests."""

from __future__ import annotations

import dask
import pytest

from calcium_dask.compute import set_quiet


@pytest.fixture(scope="module")
def sync_quiet():
    """The graphs of a module run on dask's synchronous scheduler, without progress lines."""
    set_quiet(True)
    with dask.config.set(scheduler="synchronous"):
        yield
    set_quiet(False)
