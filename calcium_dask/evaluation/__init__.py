"""Component evaluation: trace SNR, spatial consistency (r_value), a neuron-shape
classifier (cnn_pred), acceptance, and dF/F (CaImAn's ``evaluate_components`` and
``detrend_df_f``).

The functions here are numpy kernels; the dask orchestration over a movie lives in
``calcium_dask.evaluation.orchestrate``.
"""

from __future__ import annotations

from .kernels.classifier import ShapeModel, classify, load_model
from .kernels.dff import detrend_df_f
from .kernels.select import accept
from .kernels.snr import event_exceptionality, fitness_to_snr, frames_per_event, trace_snr
from .kernels.spatial import (FootprintWindows, active_frames, background_window_means,
                      footprint_window, peak_window, r_values, r_values_in_memory,
                      window_sums)

__all__ = ["FootprintWindows", "ShapeModel", "accept", "active_frames",
           "background_window_means", "classify", "detrend_df_f", "event_exceptionality",
           "fitness_to_snr", "footprint_window", "frames_per_event", "load_model",
           "peak_window", "r_values", "r_values_in_memory", "trace_snr", "window_sums"]
