"""Simulated sessions turned into results stores once per test session."""

from __future__ import annotations

import pytest

from .stores import simulated_stores


@pytest.fixture(scope="session")
def three_days(tmp_path_factory):
    """Three simulated days (96 x 96, 150 frames) as results stores of their active neurons."""
    root = tmp_path_factory.mktemp("three_days")
    urls, truth, units = simulated_stores(root, 3, size=96, T=150, seed=2)
    return urls, truth, units
