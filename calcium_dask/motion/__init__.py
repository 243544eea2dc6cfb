"""Motion correction (NoRMCorre): numpy kernels and their dask orchestration."""

from __future__ import annotations

from .correct import MotionResult, apply_shifts, motion_correct

__all__ = ["motion_correct", "apply_shifts", "MotionResult"]
