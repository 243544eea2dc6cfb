"""Parameters: grouped, typed, immutable, with CaImAn's names.

Each stage reads one group (``Params.motion``, ``Params.init``...). Every field carries
its documentation and its valid range in one place (this module), which drives validation,
the command-line help and YAML/JSON round trips; the numpy kernels default to the same
values (a test checks every kernel's signature). A CaImAn parameter dict, flat as in its
demo notebook or nested by group, is accepted unchanged by :meth:`Params.from_caiman`; its
keys that are not parameters here are in :mod:`calcium_dask.caiman_params`.

Fixed choices that are not parameters are documented constants beside the code that uses
them: ``DETREND_DECAYS`` (the seeding's detrend window, in decay times) and ``GROUP_SIDE``
in :mod:`calcium_dask.cnmf.patches`, ``SEARCH_RADIUS`` (CaImAn's default ``expandCore``, a
diamond of radius 2) in :mod:`calcium_dask.cnmf.refit`, and the border rule of evaluation,
``MOSTLY_IN_BORDER``, in :mod:`calcium_dask.evaluation.kernels.motion_artifacts`.

The defaults are the values of CaImAn's demo pipeline for two-photon movies (piecewise-
rigid correction on 48-pixel patches; CNMF on 31-pixel patches with K=4, gSig=4, p=1,
nb=2; acceptance at min_SNR=2), the starting point CaImAn recommends for such data,
rather than its library defaults (rigid correction; one patch of the whole field with
K=30, gSig=5, p=2), which leave the sources of a field beyond 30 neurons unfound. A key
a CaImAn dict does not name takes the default here.

Three defaults differ from the demo:

- ``cnn_lowest`` is 0.2, not 0.1, because ``cnn_pred`` comes from this package's shape
  classifier, whose scores are not those of CaImAn's network. On the CNMF components the
  classifier's training script holds out, 0.2 vetoes 3.9 % of the true neurons and 88 % of
  the other components (0.1: 2.9 % and 82 %; see
  :mod:`calcium_dask.train_classifier`). Re-evaluating the pipeline's results on
  28 simulated movies, 0.2 keeps 95.4 % of the true neurons CNMF found at a mean precision
  of 0.969 (0.1: 96.5 % at 0.951, and precision 0.87 on one movie).
- ``rval_thr`` is 0.8, CaImAn's library default, not the demo's 0.85. Re-evaluating the
  pipeline's results on 10 simulated movies, 0.8 keeps 94.5 % of the true neurons CNMF
  found instead of 92.7 % (on the public benchmark movie 37 of 38 instead of 35, no false
  unit added); the accepted units' mean precision is 0.934 instead of 0.944 and their
  mean F1 0.924 instead of 0.920.
- ``min_cnn_thr`` is 0.9, CaImAn's library default, not the demo's 0.99. On the CNMF
  components the classifier's training script holds out of the fit, 0.9 accepts 87 % of
  the true neurons on shape alone instead of 71 %, and 0.6 % of the other components (3
  of 488) instead of none. On 10 of the movies above (the classifier of that time),
  evaluation kept 95.1 % of the true neurons CNMF found instead of 94.4 %, with the same
  precision (0.951 against 0.952).

Evaluation adds three tests to CaImAn's, each with a parameter that turns it off: a
residue of motion correction's border fill (``max_motion_corr``), background CNMF took for
a source (``max_background_corr``) and a duplicate of a stronger unit (``thresh_subset``,
0.5 here, 0.6 in CaImAn's ``remove_duplicates``). On the 28 simulated movies above, the
background test and ``thresh_subset`` 0.5 (against none and 0.6) raise the accepted units'
mean precision from 0.959 to 0.969 and the lowest from 0.884 to 0.905; evaluation keeps
95.4 % of the true neurons CNMF found instead of 95.5 %.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from .caiman_params import CAIMAN_KEYS, read_caiman
from .errors import IgnoredParametersWarning, ParamsError

__all__ = ["Params", "GROUPS", "STAGE_GROUPS", "PRESETS", "describe"]


def _f(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None, per_axis: bool = False,
       refuse: dict[Any, str] | None = None) -> Any:
    """A parameter field: default, one-line documentation, inclusive numeric bounds.

    ``per_axis``: one value per axis (y, x), or one for both (CaImAn's lists per axis);
    ``refuse``: values of the type that are not implemented -> why (a clear error).
    """
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "per_axis": per_axis,
                                            "refuse": refuse or {}})


@dataclass(frozen=True)
class DataParams:
    fr: float = _f(30.0, "imaging rate, frames per second", lo=1e-3)
    decay_time: float = _f(0.4, "decay time of a transient of the indicator, seconds", lo=0.0)
    dxy: tuple[float, float] = _f((1.0, 1.0), "pixel size (y, x) in micrometres (recorded; the NWB export's "
                                              "grid spacing)", lo=1e-6, per_axis=True)
    var_name_hdf5: str = _f("mov", "dataset name inside an HDF5 file")
    # suite2p's names for recordings that interleave planes and channels (1-based channels)
    nplanes: int | None = _f(None, "planes per volume, flyback frames included (suite2p); None: from the "
                                   "file's metadata, else 1", lo=1)
    nchannels: int | None = _f(None, "channels per frame (suite2p); None: from the file's metadata, else 1", lo=1)
    functional_chan: int = _f(1, "channel whose activity is extracted, numbered from 1 (suite2p)", lo=1)
    align_by_chan: int | None = _f(None, "channel motion is computed on, numbered from 1, its shifts then "
                                         "applied to the functional channel (suite2p; None: the functional one)",
                                   lo=1)


@dataclass(frozen=True)
class MotionParams:
    pw_rigid: bool = _f(True, "piecewise-rigid correction after the rigid one")
    max_shifts: tuple[int, int] = _f((6, 6), "largest rigid shift (y, x) allowed, pixels", lo=0, per_axis=True)
    strides: tuple[int, int] = _f((48, 48), "patch spacing for piecewise-rigid, pixels", lo=4, per_axis=True)
    overlaps: tuple[int, int] = _f((24, 24), "overlap of neighbouring patches, pixels", lo=0, per_axis=True)
    max_deviation_rigid: int = _f(3, "largest deviation of a patch's shift from the rigid one", lo=0)
    niter_rig: int = _f(1, "iterations of rigid template refinement", lo=1, hi=20)
    niter_els: int = _f(1, "piecewise-rigid iterations: the template is refined piecewise-rigidly "
                           "niter_els - 1 times before the correction", lo=1, hi=20)
    upsample_factor_grid: int = _f(4, "refinement of the patch grid before interpolating shifts", lo=1, hi=16)
    upsample_factor: int = _f(10, "subpixel precision of registration, 1/pixels", lo=1, hi=100)
    shifts_opencv: bool = _f(True, "apply shifts by interpolation (opencv) rather than in Fourier space")
    border_nan: bool | Literal["copy"] = _f("copy", "pixels shifted in from outside: 'copy' edge, True NaN, False 0")
    nonneg_movie: bool = _f(True, "offset the corrected movie to be non-negative when min_mov < 0")
    gSig_filt: tuple[int, int] | None = _f(None, "high-pass filter width for registration (one-photon)", lo=1,
                                           per_axis=True)
    min_mov: float | None = _f(None, "movie minimum; estimated from the data when None")
    clip_quantile: float | None = _f(
        0.95, "register frames and template clipped at this quantile of the template's pixels, so "
        "that a bright cell's transients do not steer the shifts (not in CaImAn; None: raw "
        "intensities, as NoRMCorre)", lo=0.5, hi=1.0)
    smooth_sigma_time: float = _f(
        0.0, "register frames smoothed in time by a Gaussian of this SD, frames (suite2p's name; the raw "
        "frames are warped): for noisy one-photon frames, whose single-frame correlation peak is "
        "unreliable (0: none)", lo=0.0, hi=20.0)
    snr_thresh: float | None = _f(
        None, "a frame whose correlation peak stands out of the correlation beyond the template's "
        "autocorrelation lobe by less than this ratio takes the shift interpolated between its "
        "significant neighbours in time (suite2p's name; None: trust every peak)", lo=1.0, hi=10.0)
    num_frames_template: int = _f(500, "frames used to build the first template", lo=10)
    save_movie: Literal["float32", "compact", "none"] = _f(
        "compact", "how the corrected movie is stored: 'float32' (4 bytes a pixel); 'compact' (16-bit codes "
        "with a scale and offset, zstd-compressed: at most as large as a 16-bit input); 'none' (no copy: "
        "later stages warp the raw frames by the saved shifts as they read them)")
    template_sampling: Literal["middle", "spread"] = _f(
        "spread", "frames that refine a piecewise-rigid template: runs spread over the whole movie, "
        "as CaImAn samples them (the corrected movie takes the movie's average geometry; costs a "
        "second read of up to 25 input chunks), or a block in the middle of the movie (read once, "
        "with the correction; the corrected movie keeps that block's deformation)")


@dataclass(frozen=True)
class PreprocessParams:
    noise_range: tuple[float, float] = _f((0.25, 0.5), "PSD band for noise, fraction of the frame rate", lo=0.0, hi=0.5)
    noise_method: Literal["mean", "median", "logmexp"] = _f("mean", "how the PSD is averaged in the band")
    max_num_samples_fft: int = _f(3072, "frames of the pixel noise estimate: a longer patch uses three blocks "
                                        "of a third as many (start, middle, end)", lo=64)
    lags: int = _f(5, "autocovariance lags used to estimate the AR coefficients", lo=1, hi=100)
    check_nan: bool = _f(True, "fill NaN/inf pixels from the nearest finite pixel of their frame (false: an error)")


@dataclass(frozen=True)
class InitParams:
    K: int | None = _f(4, "components per patch (whole field when rf is None)", lo=0)
    gSig: tuple[float, float] = _f((4.0, 4.0), "half-size of a neuron (y, x), pixels", lo=0.5, per_axis=True)
    gSiz: tuple[int, int] | None = _f(None, "size of the box around a neuron, pixels (default 2*gSig+1)", lo=1,
                                      per_axis=True)
    method_init: Literal["greedy_roi", "corr_pnr"] = _f(
        "greedy_roi", "initialisation method: greedy_roi (two-photon) or corr_pnr (CNMF-E, one-photon: seeds "
        "from the correlation and peak-to-noise images of the filtered movie, ring model of the background; "
        "needs nb=0, nb_patch=0 and low_rank_background=None)")
    min_corr: float = _f(0.85, "corr_pnr: smallest local correlation of a seed pixel (of the filtered movie)",
                         lo=0.0, hi=1.0)
    min_pnr: float = _f(20.0, "corr_pnr: smallest peak-to-noise ratio of a seed pixel (of the filtered movie)",
                        lo=0.0)
    center_psf: bool = _f(False, "corr_pnr: filter with a zero-mean Gaussian, which removes a smooth background "
                                 "(one-photon)")
    ring_size_factor: float = _f(1.5, "corr_pnr: radius of the background ring over gSiz", lo=0.5, hi=10.0)
    ssub_B: int = _f(2, "corr_pnr: spatial downsampling of the ring background", lo=1, hi=8)
    init_iter: int = _f(2, "corr_pnr: seeding rounds (later rounds seed in the residual)", lo=1, hi=5)
    nb: int = _f(2, "number of background components", lo=0, hi=20)
    ssub: int = _f(1, "spatial downsampling during initialisation", lo=1, hi=10)
    tsub: int = _f(1, "temporal downsampling during initialisation", lo=1, hi=100)
    nIter: int = _f(5, "rank-1 refinement iterations per greedy component", lo=1, hi=100)
    maxIter: int = _f(5, "HALS iterations after initialisation", lo=0, hi=100)
    rolling_sum: bool = _f(True, "score seeds by their largest rolling sum over time, else their total energy "
                                 "(CaImAn's seeding, used when min_snr_init is None; the default seeding scores "
                                 "each pixel's transients against its noise)")
    rolling_length: int = _f(100, "length of the rolling window, frames (with rolling_sum, when min_snr_init "
                                  "is None)", lo=1)
    normalize_init: bool = _f(True, "normalise the movie by its noise before initialisation")
    min_snr_init: float | None = _f(4.0, "seeding stops when no transient of the detrended patch movie reaches "
                                         "this many noise SDs (not in CaImAn; None: always K seeds, as its "
                                         "greedy_roi)", lo=0.0)


@dataclass(frozen=True)
class PatchParams:
    rf: int | tuple[int, int] | None = _f(15, "half-size of a CNMF patch, pixels, or one per axis (y, x) "
                                              "(None: the whole field)", lo=2, per_axis=True)
    stride: int | tuple[int, int] | None = _f(10, "overlap between CNMF patches, pixels, or one per axis (y, x) "
                                                  "(None: rf // 2)", lo=0, per_axis=True)
    only_init: bool = _f(True, "patches only initialise; traces come from the refit")
    p_patch: int = _f(0, "order of the AR model inside the patches when they do not only initialise",
                      lo=0, hi=2)
    nb_patch: int = _f(1, "background components per patch", lo=0, hi=20)
    border_pix: int = _f(0, "pixels along each edge left out of every footprint (CaImAn's demo sets the "
                            "largest shift when border_nan is not 'copy')", lo=0)
    low_rank_background: bool | None = _f(True, "one low-rank background (init.nb components) for the whole field from "
                                                "the patches' backgrounds (None: no low-rank background, as "
                                                "corr_pnr's ring model needs)", refuse={
        False: "one background per patch (CaImAn's low_rank_background=False) is not implemented: the "
               "patches' backgrounds always become init.nb global components (or, with "
               "method_init='corr_pnr' and None, CNMF-E's ring background)"})
    del_duplicates: bool = _f(True, "each patch keeps only the components centred in its own part of the field "
                                    "(False, CaImAn's default: every patch keeps all its components, and "
                                    "duplicates in the overlaps merge when their traces correlate)")
    memory_fact: float = _f(1.0, "scale of the memory budget of a patch task (what leaves the smallest worker "
                                 "below dask's spill threshold: 0.7 of its memory limit less 600 MiB, at least "
                                 "a quarter of the limit; 4 GiB when unknown; fitting a patch takes about 8 "
                                 "times its data): a patch that exceeds it is initialised on averages of frames",
                            lo=0.001)


@dataclass(frozen=True)
class SpatialParams:
    thr_method: Literal["nrg", "max"] = _f("nrg", "footprint thresholding: energy or max fraction")
    nrgthr: float = _f(0.9999, "energy kept by thresholding (thr_method 'nrg')", lo=0.0, hi=1.0)
    maxthr: float = _f(0.1, "fraction of the max below which pixels are dropped (thr_method 'max')",
                       lo=0.0, hi=1.0)
    extract_cc: bool = _f(True, "keep only the largest connected piece of a footprint")
    update_background_components: bool = _f(True, "update the background footprints too")


@dataclass(frozen=True)
class TemporalParams:
    p: int = _f(1, "order of the autoregressive model of calcium (0, 1, 2)", lo=0, hi=2)
    bas_nonneg: bool = _f(False, "constrain the baseline of each trace to be non-negative")
    fudge_factor: float = _f(0.96, "shrinkage of the AR time constants", lo=0.5, hi=1.0)
    ITER: int = _f(2, "block-coordinate-descent sweeps of the temporal update", lo=1, hi=20)
    s_min: float | None = _f(None, "minimal spike size: after the noise-constrained fit, spikes are refitted "
                                   "either 0 or >= s_min (negative: |s_min| noise SDs scaled as CaImAn's; "
                                   "None or 0: no minimum)")
    optimize_g: int | bool = _f(0, "refine each trace's decay on its largest isolated events after a first "
                                   "fit: how many events (0 or false: keep the estimated decay; true: 5)",
                                lo=0)


@dataclass(frozen=True)
class MergingParams:
    do_merge: bool = _f(True, "merge overlapping, correlated components")
    merge_thr: float = _f(0.85, "trace correlation above which overlapping components merge", lo=-1.0, hi=1.0)
    max_merge_area: int | None = _f(None, "largest area of a merged component, pixels", lo=1)


@dataclass(frozen=True)
class QualityParams:
    min_SNR: float = _f(2.0, "accept when the trace SNR is above this", lo=0.0)
    SNR_lowest: float = _f(0.5, "reject when the trace SNR is below this", lo=0.0)
    rval_thr: float = _f(0.8, "accept when the spatial correlation is above this (CaImAn's library default; "
                              "its demo: 0.85)", lo=-1.0, hi=1.0)
    rval_lowest: float = _f(-1.0, "reject when the spatial correlation is below this", lo=-1.0, hi=1.0)
    use_cnn: bool = _f(True, "use the shape classifier")
    min_cnn_thr: float = _f(0.9, "accept when the classifier's score is above this (CaImAn's library default; "
                                 "its demo: 0.99)", lo=0.0, hi=1.0)
    cnn_lowest: float = _f(0.2, "reject when the classifier's score is below this (CaImAn: 0.1, for "
                                "its own network)", lo=0.0, hi=1.0)
    max_motion_corr: float | None = _f(0.6, "reject a unit lying mostly in the border motion correction filled "
                                            "whose raw trace follows the frame's displacement at |r| >= this: a "
                                            "residue of the fill, not a cell (None: keep them)", lo=0.0, hi=1.0)
    max_background_corr: float | None = _f(0.85, "reject a unit whose trace the background traces explain "
                                                "(multiple correlation >= this) and that fails the SNR test: "
                                                "background CNMF took for a source (None: keep them)",
                                           lo=0.0, hi=1.0)
    max_spread: float | None = _f(None, "reject a unit whose footprint spreads (spatial SD) beyond this many gSig: "
                                        "out-of-focus light, not a neuron of the size given (one-photon; None: keep "
                                        "them)", lo=0.5)
    thresh_subset: float = _f(0.5, "reject an accepted unit whose mask lies this much inside a stronger "
                                   "accepted unit whose trace it follows: a duplicate (CaImAn's "
                                   "remove_duplicates: 0.6; above 1: keep them)",
                              lo=0.0)
    dup_corr_thr: float = _f(0.5, "trace correlation from which a unit inside another is its duplicate",
                             lo=-1.0, hi=1.0)


@dataclass(frozen=True)
class DffParams:
    quantileMin: float = _f(8.0, "percentile of the running baseline (when flag_auto is false)", lo=0.0, hi=100.0)
    frames_window: int = _f(500, "length of the running baseline window, frames", lo=3)
    use_residuals: bool = _f(True, "add the residuals to the denoised traces before dF/F")
    flag_auto: bool = _f(True, "choose the percentile per trace automatically (quantileMin unused)")
    detrend_only: bool = _f(False, "subtract the baseline without dividing by it")


@dataclass(frozen=True)
class ComputeParams:
    chunk_frames: int | None = _f(None, "frames per chunk of the corrected movie (None: automatic)", lo=1)
    tile: int = _f(64, "tile size (y and x) of the corrected movie's chunks, pixels", lo=8)
    seed: int = _f(0, "seed of any random choice (reproducibility)", lo=0)


# -- tracking (issue 23): matching units across sessions; read by calcium_dask.tracking only --
@dataclass(frozen=True)
class TrackingParams:
    reference: int | None = _f(None, "session the others are aligned to, by position (None: the middle one)", lo=0)
    align_image: Literal["mean", "correlation", "both"] = _f(
        "mean", "summary image(s) the sessions are aligned on, high-passed and standardised (both: their "
        "sum; the correlation image changes with each day's activity)")
    max_rotation: float = _f(10.0, "largest rotation between sessions searched, degrees", lo=0.0, hi=45.0)
    align_nonrigid: bool = _f(True, "after the rigid alignment, a smooth non-rigid field from optical flow "
                                    "on the summary images")
    nonrigid_spacing: float = _f(48.0, "distance between the nodes of the smooth non-rigid field, pixels "
                                       "(the smallest scale of deformation followed)", lo=8.0)
    max_deformation: float = _f(6.0, "largest non-rigid displacement kept, pixels", lo=0.0)
    min_overlap: float = _f(0.3, "an alignment covering less of the reference's field than this fraction "
                                 "fails", lo=0.0, hi=1.0)
    min_align_corr: float = _f(0.55, "an alignment whose rigidly aligned (high-passed) images correlate less "
                                     "than this fails (simulated days of one field: 0.8-0.95; of unrelated "
                                     "fields: up to 0.47)", lo=-1.0, hi=1.0)
    only_accepted: bool = _f(True, "track only the units that passed evaluation (all units before it)")
    mask_thr: float = _f(0.2, "a footprint's mask: its pixels above this fraction of its maximum",
                         lo=0.0, hi=1.0)
    overlap: Literal["jaccard", "cosine"] = _f(
        "jaccard", "footprint overlap in the cost: Jaccard index of the masks (CaImAn) or cosine similarity "
        "of the footprints")
    max_dist: float = _f(10.0, "largest distance between the centroids of two matched units, reference "
                               "pixels (CaImAn's max_dist)", lo=0.0)
    dist_weight: float = _f(0.0, "cost = 1 - overlap + dist_weight * distance / max_dist (0: the overlap "
                                 "alone within max_dist, as CaImAn; on simulated days any weight lost recall "
                                 "and no precision)", lo=0.0)
    thresh_cost: float = _f(0.7, "pairs whose cost is above this are never matched (CaImAn's thresh_cost)",
                            lo=0.0, hi=2.0)
    min_link: float = _f(0.5, "two groups of matched units become one tracked unit when the pairwise "
                              "assignments matched at least this fraction of their pairs of units",
                         lo=0.0, hi=1.0)
# -- end of tracking ------------------------------------------------------------------------


#: group name -> dataclass, in pipeline order
GROUPS: dict[str, type] = {
    "data": DataParams,
    "motion": MotionParams,
    "preprocess": PreprocessParams,
    "init": InitParams,
    "patch": PatchParams,
    "spatial": SpatialParams,
    "temporal": TemporalParams,
    "merging": MergingParams,
    "quality": QualityParams,
    "dff": DffParams,
    "compute": ComputeParams,
    "tracking": TrackingParams,
}

#: the parameter groups each stage reads: a stage's results are reusable when these are unchanged
STAGE_GROUPS: dict[str, tuple[str, ...]] = {
    "motion": ("data", "motion", "preprocess", "compute"),
    "cnmf": ("data", "preprocess", "init", "patch", "spatial", "temporal", "merging", "compute"),
    "evaluate": ("data", "preprocess", "init", "quality", "dff"),
}

def _index() -> dict[str, list[str]]:
    """Bare parameter name -> the groups that define it."""
    idx: dict[str, list[str]] = {}
    for g, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            idx.setdefault(f.name, []).append(g)
    return idx


_NAMES = _index()
_ALL_KEYS = sorted(_NAMES) + sorted(f"{g}.{n}" for n, gs in _NAMES.items() for g in gs)


def _unknown(key: str) -> ParamsError:
    close = difflib.get_close_matches(key, _ALL_KEYS, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ParamsError(f"unknown parameter '{key}'{hint}")


def _unknown_caiman(key: str) -> ParamsError:
    close = difflib.get_close_matches(key, _ALL_KEYS + sorted(CAIMAN_KEYS), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ParamsError(f"unknown parameter '{key}' (neither calcium-dask's nor CaImAn's){hint}")


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (e.g. from YAML, JSON or a command line) to annotation ``tp``."""
    if isinstance(value, (np.ndarray, np.generic)):  # CaImAn's dicts hold np.array([4, 4]) and np.float64
        value = value.tolist()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, a, key)
            except ParamsError as e:
                errors.append(e)
        raise ParamsError(f"parameter '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args and type(value) is type(next(a for a in args if a == value)):
            return value
        raise ParamsError(f"parameter '{key}' must be one of {list(args)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str) and args[-1] is Ellipsis:
            value = [value]  # fnames="movie.tif"
        if isinstance(value, (int, float)) and not isinstance(value, bool) and args[-1] is not Ellipsis:
            value = [value] * len(args)  # CaImAn accepts gSig=4 for (4, 4)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ParamsError(f"parameter '{key}' expects {_type_name(tp)}, got {value!r}")
        if args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ParamsError(f"parameter '{key}' expects {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"parameter '{key}' expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ParamsError(f"parameter '{key}' expects an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"parameter '{key}' expects a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"parameter '{key}' expects a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for '{key}'")  # a bug in this module


def _check_range(value: Any, meta: Any, key: str) -> None:
    lo, hi = meta["lo"], meta["hi"]
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ParamsError(f"parameter '{key}' = {value!r} is out of range {rng}")


def _plain(value: Any) -> Any:
    """``value`` as JSON has it: tuples (and lists) as lists, all the way down."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A group's field types (resolving them costs more than the rest of validating a group)."""
    return typing.get_type_hints(cls)


def _check_axes(value: Any, key: str) -> None:
    """A value per axis must be two (y, x): CaImAn's 3-D lists are refused by name."""
    if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) == 1 and len(value) != 2:
        why = (": calcium-dask processes 2-D movies, one plane at a time (open_movie(..., plane=...))"
               if len(value) == 3 else "")
        raise ParamsError(f"parameter '{key}' expects 2 values (y, x), got {len(value)}{why}")


def _check_refused(value: Any, meta: Any, key: str) -> None:
    for bad, why in meta["refuse"].items():
        if value == bad and type(value) is type(bad):
            raise ParamsError(f"parameter '{key}' = {value!r} is not supported: {why}")


def _build_group(name: str, values: dict[str, Any]) -> Any:
    cls = GROUPS[name]
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in values.items():
        if k not in fields:
            raise _unknown(f"{name}.{k}")
        key, meta = f"{name}.{k}", fields[k].metadata
        if meta["per_axis"]:
            _check_axes(v, key)
        kwargs[k] = _coerce(v, hints[k], key)
        _check_range(kwargs[k], meta, key)
        _check_refused(kwargs[k], meta, key)
    return cls(**kwargs)


@dataclass(frozen=True)
class Params:
    """All parameters of a run, one immutable group per stage.

    Examples
    --------
    >>> p = Params.from_caiman({"fr": 30, "pw_rigid": True, "K": 4, "gSig": [4, 4]})
    >>> p.motion.pw_rigid, p.init.gSig
    (True, (4.0, 4.0))
    >>> p.replace(**{"merging.merge_thr": 0.9}).merging.merge_thr
    0.9
    """

    data: DataParams = field(default_factory=DataParams)
    motion: MotionParams = field(default_factory=MotionParams)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    init: InitParams = field(default_factory=InitParams)
    patch: PatchParams = field(default_factory=PatchParams)
    spatial: SpatialParams = field(default_factory=SpatialParams)
    temporal: TemporalParams = field(default_factory=TemporalParams)
    merging: MergingParams = field(default_factory=MergingParams)
    quality: QualityParams = field(default_factory=QualityParams)
    dff: DffParams = field(default_factory=DffParams)
    compute: ComputeParams = field(default_factory=ComputeParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)

    def __post_init__(self) -> None:
        _check_combinations(self)

    # -- construction -------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Params:
        """Named parameter sets (:data:`~calcium_dask.params.PRESETS`), e.g. ``Params.preset("miniscope")``.

        ``miniscope`` (alias ``cnmfe``): one-photon movies, after CaImAn's CNMF-E demo
        (``demo_pipeline_cnmfE``): rigid correction on high-pass filtered frames
        (``gSig_filt=3``) smoothed in time (``smooth_sigma_time=1``), peaks below
        ``snr_thresh`` distrusted; CNMF-E on 40-pixel patches (``method_init='corr_pnr'``, ring background, ``K=None``,
        ``gSig=3``, ``gSiz=13``); acceptance by SNR and r_value only (``use_cnn=False``: the
        shape classifier was trained on two-photon somata) and by the footprints' spread
        (``max_spread``). The seed thresholds ``min_corr=0.6``, ``min_pnr=5`` depart from the
        demo's 0.8 and 10, which seed about half of the neurons of simulated miniscope
        movies (chosen on simulated seeds 1 and 4; see ``benchmarks/bench_onephoton.py``):
        look at :func:`calcium_dask.cnmf.correlation_pnr` of your movie to set them.
        ``overrides`` (``"group.key"`` or bare names) are applied on top; set ``fr`` and
        ``decay_time`` for your movie.
        """
        if name not in PRESETS:
            raise ParamsError(f"unknown parameter preset '{name}'; presets are: {', '.join(sorted(PRESETS))}")
        return cls.from_dict(PRESETS[name]).replace(**overrides) if overrides else cls.from_dict(PRESETS[name])

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None, *, strict: bool = True) -> Params:
        """Build from a dict nested by group, flat with bare names, or ``"group.key"`` keys.

        Only this package's parameters are accepted; ``strict=False`` is
        :meth:`from_caiman`, which takes CaImAn's dicts as they are.
        """
        if not strict:
            return cls.from_caiman(d or {})
        grouped: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for key, value in (d or {}).items():
            if key in GROUPS and isinstance(value, dict):
                for k, v in value.items():
                    _place(grouped, f"{key}.{k}", v)
            else:
                _place(grouped, key, value)
        return cls(**{g: _build_group(g, v) for g, v in grouped.items()})

    @classmethod
    def from_caiman(cls, d: dict[str, Any]) -> Params:
        """Accept a CaImAn parameter dict unchanged: ``CNMFParams(params_dict=...)``'s flat
        dict, one nested by group (``{"motion": {...}, "init": {...}}``) or
        ``CNMFParams.to_dict()`` (``"init_params"``...); values may be numpy scalars and
        arrays, and per-axis values lists, tuples or arrays.

        A key of the registry sets that parameter (given in several of CaImAn's groups, as
        ``p`` in ``preprocess`` and ``temporal``, the value in the group that holds it here
        is used). Any other CaImAn key is treated as :mod:`calcium_dask.caiman_params` says:
        keys that cannot change the results here (``n_processes``, memory layout, OnACID's
        settings...) are accepted quietly; keys that change CaImAn's results but are not
        implemented here (``method_ls``...) are ignored and named in one
        :class:`~calcium_dask.errors.IgnoredParametersWarning` (as are values of a key set
        twice that are not used); an unsupported method (``method_deconvolution='cvxpy'``)
        or an unknown key is a :class:`~calcium_dask.errors.ParamsError`.
        """
        read = read_caiman(d, _NAMES, GROUPS, _unknown_caiman)
        params = cls(**{g: _build_group(g, read.values.get(g, {})) for g in GROUPS})
        message = read.warning()
        if message:
            warnings.warn(IgnoredParametersWarning(message), stacklevel=2)
        return params

    @classmethod
    def load(cls, path: str | Path) -> Params:
        """Read parameters from a YAML or JSON file (safe loading only)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ParamsError(f"{path}: cannot read parameter file ({e.strerror})") from None
        try:
            d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            msg = str(e).splitlines()[0]
            raise ParamsError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({msg})") from None
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ParamsError(f"{path}: expected a mapping of parameters, got {type(d).__name__}")
        try:
            return cls.from_caiman(d)
        except ParamsError as e:
            raise ParamsError(f"{path}: {e}") from None

    # -- use ---------------------------------------------------------------------
    def replace(self, **overrides: Any) -> Params:
        """A copy with ``"group.key"`` or bare-name overrides applied and validated."""
        d = self.to_dict()
        for key, value in overrides.items():
            group, name = _resolve(key)
            d[group][name] = value
        return Params.from_dict(d)

    def with_overrides(self, assignments: list[str]) -> Params:
        """Apply command-line ``key=value`` strings (values parsed as YAML scalars)."""
        overrides = {}
        for a in assignments:
            key, sep, raw = a.partition("=")
            if not sep or not key.strip():
                raise ParamsError(f"--set expects key=value, got {a!r}")
            try:
                overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                raise ParamsError(f"--set {key}: cannot parse value {raw!r}") from None
        return self.replace(**overrides)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict (tuples as lists), fit for JSON and YAML."""
        return {g: {f.name: _plain(getattr(group, f.name)) for f in dataclasses.fields(group)}
                for g, group in ((g, getattr(self, g)) for g in GROUPS)}

    def to_json(self) -> str:
        """The parameters as JSON, nested by group (what a results store records)."""
        return json.dumps(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        """Write YAML (``.yaml``/``.yml``) or JSON (any other suffix)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=1))

    def digest(self, stage: str) -> str:
        """A short hash of the groups ``stage`` reads (:data:`~calcium_dask.params.STAGE_GROUPS`)."""
        import hashlib

        d = self.to_dict()
        text = json.dumps({g: d[g] for g in STAGE_GROUPS[stage]}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def gSiz(self) -> tuple[int, int]:
        """The neuron box size, defaulting to ``2 * gSig + 1`` as CaImAn does."""
        if self.init.gSiz is not None:
            return self.init.gSiz
        return tuple(int(2 * round(g) + 1) for g in self.init.gSig)  # type: ignore[return-value]


#: named parameter sets, CaImAn's names (see :meth:`Params.preset`)
PRESETS: dict[str, dict[str, Any]] = {
    "miniscope": {
        "motion": {"pw_rigid": False, "max_shifts": (8, 8), "gSig_filt": (3, 3), "border_nan": "copy",
                   "smooth_sigma_time": 1.0, "snr_thresh": 1.5},
        "init": {"method_init": "corr_pnr", "K": None, "gSig": (3, 3), "gSiz": (13, 13), "center_psf": True,
                 "min_corr": 0.6, "min_pnr": 5.0, "ssub": 1, "tsub": 2, "nb": 0, "ring_size_factor": 1.4,
                 "ssub_B": 2, "init_iter": 2, "normalize_init": False},
        "patch": {"rf": 40, "stride": 20, "nb_patch": 0, "low_rank_background": None, "del_duplicates": True,
                  "only_init": True, "border_pix": 0},
        "merging": {"merge_thr": 0.7},
        "temporal": {"p": 1},
        "quality": {"min_SNR": 3.0, "rval_thr": 0.85, "use_cnn": False, "max_spread": 1.8},
    },
}
PRESETS["cnmfe"] = PRESETS["miniscope"]


def _check_combinations(p: Params) -> None:
    """Refuse parameter sets whose parts contradict each other (one line saying what to set)."""
    if p.init.method_init != "corr_pnr":
        return
    bad = [f"nb={p.init.nb}" if p.init.nb else "", f"nb_patch={p.patch.nb_patch}" if p.patch.nb_patch else "",
           "low_rank_background=True" if p.patch.low_rank_background else ""]
    bad = [b for b in bad if b]
    if bad:
        raise ParamsError(f"method_init='corr_pnr' models the background with CNMF-E's ring, not with low-rank "
                          f"components: set nb=0, nb_patch=0 and low_rank_background=None (got {', '.join(bad)})")


def _resolve(key: str) -> tuple[str, str]:
    """``"group.key"`` or a bare name -> (group, name); unknown keys suggest the closest."""
    if "." in key:
        group, _, name = key.partition(".")
        if group in GROUPS and name in _NAMES and group in _NAMES[name]:
            return group, name
        raise _unknown(key)
    if key in _NAMES:
        return _NAMES[key][0], key
    raise _unknown(key)


def _place(grouped: dict[str, dict[str, Any]], key: str, value: Any) -> None:
    group, name = _resolve(key)
    grouped[group][name] = value


def describe() -> list[tuple[str, Any, str]]:
    """``(group.key, default, doc)`` for every parameter: the registry behind help texts."""
    rows = []
    for g, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            rows.append((f"{g}.{f.name}", f.default, f.metadata["doc"]))
    return rows
