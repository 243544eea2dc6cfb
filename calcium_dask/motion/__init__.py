"""Motion correction (NoRMCorre): numpy kernels (``motion.kernels``) and their dask orchestration."""

from __future__ import annotations

from .correct import MotionResult, apply_shifts, corrected_movie, motion_correct, stored_motion

__all__ = ["motion_correct", "apply_shifts", "corrected_movie", "stored_motion", "MotionResult"]
