"""Motion correction as a dask graph (NoRMCorre, DESIGN.md section 3.1).

1. A template from a contiguous block of frames in the middle of the movie, refined by
   ``niter_rig`` rigid registrations of that block (and ``niter_els - 1`` piecewise-rigid
   ones when ``pw_rigid``): a few tasks over parts of the block, no pass over the movie.
2. One pass over the movie: each task corrects a block of whole frames against the template
   (a single graph key, shipped to each worker once), writes all of its tiles of the
   corrected zarr movie (chunks ``(Tc, tile, tile)``, so no two tasks write one chunk), and
   returns its shifts and the partial sums of the summary images of the raw and corrected
   frames. The movie is read once and never held whole by any process.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..movie_blocks import fill_missing_lazy
from .._version import __version__
from ..compute import compute
from ..errors import ParamsError, StoreError
from ..params import MotionParams, Params
from ..store import ResultsStore, as_store
from ..summary import summary_dataset
from ..summary.kernels import combine, partial_sums
from .kernels import apply_shift, correct_frames, patch_centers, warp_piecewise
from .kernels.templates import alike_template, corrected_sums, group_means, mean_from_sums, merge_templates
from .kernels.filters import high_pass_filter
from .kernels.temporal import halo_frames

__all__ = ["motion_correct", "apply_shifts", "kernel_options", "MotionResult", "Template", "block_frames",
           "corrected_movie", "stored_motion", "compact_encoding", "encode_compact", "TEMPLATE_BYTES", "MOVIE_PATH"]

TEMPLATE_BYTES = 256 * 2**20  # float32 frames of the template block (all its parts)
BLOCK_BYTES = 128 * 2**20  # float32 frames of one correction block
# The corrected movie is stored uncompressed, as CaImAn's memory-mapped file: its float32
# noise compresses by ~15 % and zstd cost ~0.7 ms per 512x512 frame to write.
_RAW = {"compressors": None}
# what each block reports besides its frames (shifts_rig: piecewise mode only)
_RECORD = ("shifts", "shifts_rig", "patch_shifts", "peak", "peak_snr")
SNR_HALO = 8  # frames of each neighbour a block reads to interpolate its unreliable shifts


@dataclass
class MotionResult:
    """What motion correction produced.

    Attributes
    ----------
    motion : xarray.Dataset
        ``shifts`` (frame, axis): the rigid shift applied to each frame (piecewise: the
        frame average of the applied shift field); ``patch_shifts`` (frame, patch_y,
        patch_x, axis) and ``shifts_rig`` (frame, axis), the rigid stage's estimate around
        which the patches were searched (CaImAn's ``shifts_rig``), when piecewise;
        ``peak`` (frame) correlation with the template; ``template`` (y, x).
    corrected : xarray.DataArray
        The corrected movie (frame, y, x), lazy: read from the store when one was given,
        otherwise recomputed from the raw movie on demand.
    summary_raw, summary : xarray.Dataset
        Mean, max, std and correlation images before and after correction.
    seconds : float
        Wall time of the stage.
    store : ResultsStore or None
        The results store written to, if any.
    """

    motion: xr.Dataset
    corrected: xr.DataArray
    summary_raw: xr.Dataset
    summary: xr.Dataset
    seconds: float
    store: ResultsStore | None = None


def kernel_options(mp: MotionParams) -> dict[str, Any]:
    """Unpack the motion parameters into :func:`correct_frames` keyword arguments."""
    return dict(pw_rigid=mp.pw_rigid, max_shifts=mp.max_shifts, strides=mp.strides, overlaps=mp.overlaps,
                max_deviation_rigid=mp.max_deviation_rigid, upsample_factor=mp.upsample_factor,
                upsample_factor_grid=mp.upsample_factor_grid, border_nan=mp.border_nan,
                shifts_opencv=mp.shifts_opencv, gSig_filt=mp.gSig_filt, clip_quantile=mp.clip_quantile,
                smooth_sigma_time=mp.smooth_sigma_time, snr_thresh=mp.snr_thresh)


def block_frames(shape: tuple[int, int, int], chunk_frames: int | None, input_chunk: int | None = None) -> int:
    """Frames per correction block (and per time chunk of the corrected movie).

    With ``input_chunk`` (the movie's frames per dask chunk), a block is an even part or
    a multiple of it, so that no input chunk is cut and pasted into blocks.
    """
    if chunk_frames:
        return int(min(chunk_frames, shape[0]))
    per_frame = shape[1] * shape[2] * 4
    by_memory = max(16, min(1000, BLOCK_BYTES // per_frame))
    # at least ~8 blocks, so that short movies still keep every worker busy
    n = int(min(shape[0], by_memory, max(16, -(-shape[0] // 8))))
    if input_chunk and n < input_chunk:
        n = -(-input_chunk // -(-input_chunk // n))  # input_chunk cut in equal parts
    elif input_chunk and n > input_chunk:
        n = n // input_chunk * input_chunk  # whole input chunks
    return n


TEMPLATE_PARTS = 4  # tasks sharing the template's frames (groups of GROUP frames stay whole)
GROUP = 10  # frames per group of the first template (CaImAn's bin_median window)
SAMPLE_RUNS = 25  # runs of frames spread over the movie that refine a piecewise template


def _part_frames(pieces: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """One part of the template's frames (the movie's dtype) from its ``(block, lo, hi)`` pieces."""
    arrays = [np.asarray(block[lo:hi]) for block, lo, hi in pieces]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@dataclass(frozen=True)
class Template:
    """The registration template and what the correction of every block shares.

    ``template`` (H, W); ``min_mov``: the movie's minimum, subtracted when
    ``nonneg_movie`` (CaImAn's ``add_to_movie``); ``max_mov``: the largest value of the
    template's raw frames, which sizes the compact storage of an integer movie.
    """

    template: np.ndarray
    min_mov: float
    max_mov: float


@dataclass(frozen=True)
class _PartStats:
    means: np.ndarray
    low: float
    high: float


def _part_stats(pieces: list, gSig_filt: Any, first: bool) -> _PartStats:
    """Group means, minimum and maximum of one part of the template's frames."""
    frames = _part_frames(pieces)
    src = frames if gSig_filt is None else high_pass_filter(frames, gSig_filt)
    low = np.nanmin(src) if src.dtype.kind == "f" else src.min()
    high = np.nanmax(frames) if frames.dtype.kind == "f" else frames.max()
    return _PartStats(group_means(frames, GROUP, partial=first), float(low), float(high))


def _first_template(stats: list[_PartStats], min_mov: float | None, gSig_filt: Any = None) -> Template:
    """Median of all group means (CaImAn's bin_median) and the movie minimum; with
    ``gSig_filt`` (one-photon: little detail in each frame, a median of groups at
    different places smears it) the mean of the groups most alike (:func:`alike_template`)."""
    means = np.concatenate([st.means for st in stats])
    lowest = min(st.low for st in stats) if min_mov is None else min_mov
    first = merge_templates(means) if gSig_filt is None else alike_template(means, gSig_filt)
    return Template(first, float(lowest), max(st.high for st in stats))


def _part_sums(pieces: list, template: Template, opts: dict[str, Any]) -> tuple:
    return corrected_sums(_part_frames(pieces), template.template, **opts)


def _next_template(sums: list[tuple], template: Template) -> Template:
    return Template(mean_from_sums(sums), template.min_mov, template.max_mov)


def _template_frames(t: int, n: int, edges: Sequence[int]) -> tuple[int, int]:
    """(first frame, number of frames) of the template block: ``n`` frames around the
    middle of the movie, centred on the input-chunk edge nearest to it, so that its
    halves lie in two chunks, which two workers read (the correction needs them anyway)
    and register side by side."""
    n = min(n, t)
    inner = [int(e) for e in edges if 0 < e < t]
    centre = min(inner, key=lambda e: (abs(e - t // 2), e)) if inner else t // 2
    return int(min(max(centre - n // 2, 0), t - n)), n


def _template_parts(starts: Sequence[int], lengths: Sequence[int], start: int, n: int, size: int,
                    edges: Sequence[int] = ()) -> list[list[tuple[int, int, int]]]:
    """Frames ``start:start + n`` cut at the input-chunk ``edges``, then into parts of at
    most ``size``, each as the (block index, first, end frame inside the block) pieces of
    the correction blocks it spans: the parts, and so the template, do not depend on the
    blocks."""
    cuts = sorted({start, start + n, *(int(e) for e in edges if start < e < start + n)})
    parts = []
    for first, end in zip(cuts[:-1], cuts[1:]):
        for a in range(first, end, size):
            b = min(a + size, end)
            parts.append([(i, max(a, t0) - t0, min(b, t0 + m) - t0)
                          for i, (t0, m) in enumerate(zip(starts, lengths)) if t0 < b and t0 + m > a])
    return parts


def _sample_runs(t: int, n: int, edges: Sequence[int]) -> list[tuple[int, int]]:
    """(first frame, length) of up to ``SAMPLE_RUNS`` runs of whole groups of frames spread
    evenly over the movie, about ``n`` frames in all, each inside one input chunk when
    the chunk holds it."""
    runs = max(1, min(SAMPLE_RUNS, n // GROUP))
    size = min(t, GROUP * max(1, n // (GROUP * runs)))
    bounds = [0, *(int(e) for e in edges if 0 < e < t), t]
    out = []
    for r in range(runs):
        centre = int((r + 0.5) * t / runs)
        k = int(np.searchsorted(bounds, centre, side="right")) - 1
        lo, hi = (bounds[k], bounds[k + 1]) if bounds[k + 1] - bounds[k] >= size else (0, t)
        out.append((min(max(centre - size // 2, lo), hi - size), size))
    return out


def _keep_runs(frames: np.ndarray, offsets: Sequence[int], size: int) -> np.ndarray:
    return np.concatenate([frames[o:o + size] for o in offsets])


def _sample_parts(movie: xr.DataArray, runs: list[tuple[int, int]], edges: Sequence[int], check_nan: bool) -> list:
    """The frames of ``runs``, one part per input chunk they fall in, each read by its own
    task (not shared with the correction blocks, which would hold whole chunks in
    memory until the template is ready)."""
    bounds = np.asarray([int(e) for e in edges], np.int64)
    by_chunk: dict[int, list[int]] = {}
    for start, _ in runs:
        by_chunk.setdefault(int(np.searchsorted(bounds, start, side="right")), []).append(start)
    size, parts = runs[0][1], []
    for firsts in by_chunk.values():
        a, b = min(firsts), max(firsts) + size
        piece = movie.data[a:b].rechunk({0: -1, 1: -1, 2: -1})
        # the slice fuses into the read: for TIFF pages only these frames are read
        piece = dask.optimize(fill_missing_lazy(piece, check_nan, movie.attrs.get("source", "movie"), a))[0]
        frames = dask.delayed(_keep_runs, pure=True)(piece.to_delayed().ravel()[0], [f - a for f in firsts], size)
        parts.append([(frames, 0, len(firsts) * size)])
    return parts


def _template_graph(movie: xr.DataArray, blocks: list, starts: np.ndarray, lengths: np.ndarray,
                    mp: MotionParams, opts: dict[str, Any], check_nan: bool) -> Any:
    """The template as a small graph: a first template from the group means of a
    contiguous block of frames in the middle of the movie, refined ``niter_rig`` times (and
    ``niter_els - 1`` times piecewise when ``pw_rigid``) by registering frames to it and
    averaging them. The block's parts are slices of the correction blocks, so they are read
    once, by the reads the correction needs anyway, and registered in parallel.

    With ``template_sampling="spread"`` (the default), a piecewise-rigid template is
    refined on runs of frames spread over the whole movie instead (:func:`_sample_runs`),
    as CaImAn samples its template's frames evenly: the corrected movie takes the
    template's geometry, and one block of frames holds the tissue's deformation of that
    moment, which the corrected mean image keeps (a rigid correction leaves every frame's
    own deformation, so its mean has the movie's average geometry whatever the template)."""
    t, h, w = movie.shape
    n = int(min(t, mp.num_frames_template, max(GROUP, TEMPLATE_BYTES // (h * w * 4))))
    edges = np.cumsum(movie.data.chunks[0])[:-1]
    start, n = _template_frames(t, n, edges)
    size = GROUP * -(-n // (GROUP * TEMPLATE_PARTS))
    cuts = _template_parts(starts, lengths, start, n, size, edges)
    parts = [[(blocks[i], lo, hi) for i, lo, hi in part] for part in cuts]
    stats = [dask.delayed(_part_stats, pure=True)(p, mp.gSig_filt, i == 0) for i, p in enumerate(parts)]
    template = dask.delayed(_first_template, pure=True)(stats, mp.min_mov, mp.gSig_filt)
    if opts["pw_rigid"] and mp.template_sampling == "spread":
        parts = _sample_parts(movie, _sample_runs(t, n, edges), edges, check_nan)
        # runs from far apart in time, put end to end: no smoothing or interpolation across them
        opts = {**opts, "smooth_sigma_time": 0.0, "snr_thresh": None}
    # CaImAn registers piecewise-rigidly against the rigid template (niter_els = 1)
    pw_rounds = mp.niter_els - 1 if opts["pw_rigid"] else 0
    rounds = [{**opts, "pw_rigid": False}] * mp.niter_rig + [opts] * pw_rounds
    for round_opts in rounds:
        sums = [dask.delayed(_part_sums, pure=True)(p, template, round_opts) for p in parts]
        template = dask.delayed(_next_template, pure=True)(sums, template)
    return template


def halo_width(mp: MotionParams) -> int:
    """Frames of each neighbouring block a correction block reads: what its temporal
    smoothing spans, and a few more to interpolate unreliable shifts across block edges."""
    return max(halo_frames(mp.smooth_sigma_time), SNR_HALO if mp.snr_thresh is not None else 0)


def _edge(block: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` frames of a block (the last ``-n`` when negative)."""
    return block[n:] if n < 0 else block[:n]


def _halos(blocks: list, h: int) -> list[tuple[Any, Any]]:
    """Per block, the delayed last ``h`` frames of the block before it and the first ``h``
    of the block after it (None at the movie's ends, or without a halo)."""
    if h <= 0:
        return [(None, None)] * len(blocks)
    edge = dask.delayed(_edge, pure=True)
    return [(edge(blocks[i - 1], -h) if i > 0 else None, edge(blocks[i + 1], h) if i + 1 < len(blocks) else None)
            for i in range(len(blocks))]


@dataclass(frozen=True)
class MovieOutput:
    """Where and how a block task writes its corrected frames and its motion records.

    ``path``: the corrected movie's array (None with ``save_movie="none"``); ``compact``:
    store it as 16-bit codes (:func:`compact_encoding`); ``records``: also write the
    shifts to the store's ``/motion`` arrays (their rows stay out of the client).
    """

    store: ResultsStore
    path: str | None
    compact: bool
    input_dtype: str
    records: bool


HEADROOM = 4.0  # compact codes reach this many times the template frames' largest value


def compact_codes(input_dtype: Any) -> bool:
    """Whether ``save_movie="compact"`` stores 16-bit codes: for an integer movie (whose
    range its dtype bounds). A float movie is stored as float32 compressed losslessly: its
    own width, and no range to guess (one pixel stored as 1e30 would ruin any code)."""
    return np.dtype(input_dtype).kind in "ui"


def compact_encoding(template: Template, input_dtype: Any, nonneg: bool) -> tuple[float, float]:
    """``(scale, offset)`` of the 16-bit corrected movie of an integer movie:
    ``value = code * scale + offset``.

    The codes span from the movie's minimum to ``HEADROOM`` times the largest value of the
    template's frames (transients far brighter than the frames the template saw still
    fit), within the dtype's range: the step is a small fraction of a count for typical
    16-bit data. Values beyond are clipped.
    """
    info = np.iinfo(np.dtype(input_dtype))
    lo = max(min(template.min_mov, 0.0), float(info.min))
    hi = max(min(HEADROOM * max(template.max_mov, 0.0), float(info.max)), lo + 1.0)
    margin = 0.01 * (hi - lo)  # interpolation overshoots a little beyond the raw range
    shift = template.min_mov if nonneg else 0.0
    lo, hi = lo - shift - margin, hi - shift + margin
    return float(np.float32((hi - lo) / 65535.0)), float(np.float32(lo))


def encode_compact(frames: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Frames as 16-bit codes (NaN and values out of range clipped to the range)."""
    codes = np.rint((np.nan_to_num(frames, nan=offset) - np.float32(offset)) / np.float32(scale))
    return np.clip(codes, 0, 65535).astype(np.uint16)


def _write_block(out: MovieOutput, t0: int, template: Template, corrected: np.ndarray, rec: dict[str, Any],
                 nonneg: bool) -> None:
    if out.path is not None:
        data = corrected
        if out.compact:
            data = encode_compact(corrected, *compact_encoding(template, out.input_dtype, nonneg))
        out.store.array(out.path)[t0:t0 + len(corrected)] = data
    if out.records:
        for name in _RECORD:
            if rec.get(name) is not None:
                out.store.array(f"motion/{name}")[t0:t0 + len(corrected)] = rec[name]


def _correct_block(frames: np.ndarray, template: Template, *, t0: int, opts: dict[str, Any],
                   nonneg: bool, out: MovieOutput | None, given: dict | ShiftWindow | None = None,
                   sums: bool = True, halo: tuple[Any, Any] = (None, None)) -> dict[str, Any]:
    """Correct one block (registered with ``halo``, its neighbours' edge frames), write it,
    and return its shifts (unless written to the store) and summary partial sums."""
    min_mov = template.min_mov if nonneg else None
    stored = isinstance(given, ShiftWindow)  # the shifts are in the store: nothing to send back
    if stored:
        given = given.load()
    if given is None:
        before, after = (np.zeros((0, *frames.shape[1:]), frames.dtype) if h is None else np.asarray(h)
                         for h in halo)
        stack = np.concatenate([before, frames, after]) if len(before) or len(after) else frames
        res = correct_frames(stack, template.template, min_mov=min_mov, halo=(len(before), len(after)), **opts)
    else:
        res = _apply_given(frames, given, opts, min_mov)
    corrected = res["corrected"]
    rec = {k: res.get(k) for k in _RECORD}
    if out is not None:
        _write_block(out, t0, template, corrected, rec, nonneg)
    if stored or (out is not None and out.records):
        rec = {k: None for k in _RECORD}
    if sums:
        offset = template.template - (min_mov or 0.0)
        rec["raw"] = partial_sums(frames, offset=template.template)
        rec["corrected"] = partial_sums(corrected, offset=offset)
    else:
        rec["frames"] = corrected
    return rec


def _apply_given(frames: np.ndarray, given: dict, opts: dict[str, Any], min_mov: float | None) -> dict:
    """Warp frames by saved shifts (e.g. a second channel) without registering them."""
    frames = np.asarray(frames, dtype=np.float32)
    if given.get("patch_shifts") is not None:
        out = warp_piecewise(frames, given["patch_shifts"], strides=opts["strides"], overlaps=opts["overlaps"],
                             upsample_factor_grid=opts["upsample_factor_grid"], border_nan=opts["border_nan"],
                             interpolation="cubic")
    else:
        out = apply_shift(frames, given["shifts"], border_nan=opts["border_nan"], interpolation="cubic",
                          method="opencv" if opts["shifts_opencv"] else "fft")
    if min_mov is not None:
        out -= np.float32(min_mov)
    return {"corrected": out, "shifts": given["shifts"], "patch_shifts": given.get("patch_shifts"),
            "shifts_rig": given.get("shifts_rig"), "peak": np.full(len(frames), np.nan, np.float32)}


def _frame_blocks(movie: xr.DataArray, params: Params, tc: int) -> tuple[list, np.ndarray, np.ndarray]:
    """The movie in blocks of at most ``tc`` whole frames, missing pixels filled: delayed
    arrays, their first frames (multiples of ``tc``) and lengths.

    When the movie's time chunks are equal multiples of ``tc``, blocks are views of their
    chunk; dask's rechunk would copy every piece into a new array (0.15 s per 512x512x125).
    """
    data = movie.data.rechunk({1: -1, 2: -1})
    sizes = data.chunks[0]
    if not (sizes[0] > tc and sizes[0] % tc == 0 and all(c == sizes[0] for c in sizes[:-1])):
        data = data.rechunk({0: tc})
    data = fill_missing_lazy(data, params.preprocess.check_nan, movie.attrs.get("source", "movie"))
    blocks, starts, lengths = [], [], []
    for chunk, t0, n in zip(data.to_delayed().ravel(), np.cumsum((0,) + data.chunks[0][:-1]), data.chunks[0]):
        for lo in range(0, n, tc):
            hi = min(lo + tc, n)
            blocks.append(chunk if hi - lo == n else dask.delayed(_frames, pure=True)(chunk, lo, hi))
            starts.append(int(t0) + lo)
            lengths.append(hi - lo)
    return blocks, np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)


def _frames(chunk: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return chunk[lo:hi]


def _placeholder(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    import dask.array as da

    # one dask chunk: nothing is computed, and a graph of thousands of empty writes took 0.1-0.3 s
    return da.zeros(shape, dtype=dtype, chunks=shape)


def _prepare_output(store: ResultsStore, path: str, shape: tuple[int, int, int], tc: int, tile: int,
                    attrs: dict, compact: str | None) -> None:
    """Create the corrected-movie array (metadata only) so that tasks can write regions.

    Compact: 16-bit codes with CF ``scale_factor``/``add_offset`` attributes (set once the
    template is known), which ``xarray.open_zarr`` decodes to floats, for an integer movie;
    float32 compressed by zstd for a float one (:func:`compact_codes`)."""
    group, _, name = path.rpartition("/")
    chunks = (tc, min(tile, shape[1]), min(tile, shape[2]))
    ds = xr.Dataset({name: (("frame", "y", "x"), _placeholder(shape))}, attrs=attrs)
    encoding: dict[str, Any] = {"chunks": chunks, **_RAW}
    if compact == "codes":  # zstd (zarr's default) pays for itself on 16-bit codes
        encoding = {"chunks": chunks, "dtype": "uint16", "scale_factor": np.float32(1.0),
                    "add_offset": np.float32(0.0), "_FillValue": None}
    elif compact:
        encoding = {"chunks": chunks}
    store.remove(path)  # other movies in the group (e.g. a second channel) stay
    with warnings.catch_warnings():  # codes hold no NaN by design (compact refuses border_nan=True)
        warnings.filterwarnings("ignore", message="saving variable .* as an integer dtype without any _FillValue")
        store.write(ds, group=group or None, compute=False, mode="a", encoding={name: encoding})


def _record_vars(shape: tuple[int, int, int], mp: MotionParams) -> dict[str, tuple]:
    """The per-frame variables of ``/motion`` and their dims."""
    T = shape[0]
    out = {"shifts": (("frame", "axis"), (T, 2)), "peak": (("frame",), (T,))}
    if mp.pw_rigid:
        cy, cx = patch_centers(shape[1:], strides=mp.strides, overlaps=mp.overlaps)
        out["patch_shifts"] = (("frame", "patch_y", "patch_x", "axis"), (T, len(cy), len(cx), 2))
        out["shifts_rig"] = (("frame", "axis"), (T, 2))
    if mp.snr_thresh is not None:  # the significance of each frame's correlation peak
        out["peak_snr"] = (("frame",), (T,))
    return out


def _motion_coords(shape: tuple[int, int, int], mp: MotionParams) -> dict[str, Any]:
    coords: dict[str, Any] = {"axis": np.array(["y", "x"], dtype=object)}  # vlen strings: zarr v3 spec
    if mp.pw_rigid:
        cy, cx = patch_centers(shape[1:], strides=mp.strides, overlaps=mp.overlaps)
        coords.update(patch_y=np.asarray(cy, np.float32), patch_x=np.asarray(cx, np.float32))
    return coords


_CONVENTION = {"convention": "shift applied to each raw frame, pixels"}


def _prepare_records(store: ResultsStore, shape: tuple[int, int, int], tc: int, mp: MotionParams) -> None:
    """Create ``/motion``'s per-frame arrays (chunks of ``tc`` frames) for tasks to fill."""
    data = {name: (dims, _placeholder(s)) for name, (dims, s) in _record_vars(shape, mp).items()}
    ds = xr.Dataset(data, coords=_motion_coords(shape, mp), attrs=_CONVENTION)
    enc = {name: {"chunks": (tc, *s[1:])} for name, (_, s) in _record_vars(shape, mp).items()}
    store.write(ds, group="motion", compute=False, encoding=enc)


def _motion_dataset(recs: list[dict], template: np.ndarray, mp: MotionParams, shape: tuple) -> xr.Dataset:
    data = {name: (dims, np.concatenate([r[name] for r in recs]).astype(np.float32))
            for name, (dims, _) in _record_vars(shape, mp).items()}
    data["template"] = (("y", "x"), template.astype(np.float32))
    return xr.Dataset(data, coords=_motion_coords(shape, mp), attrs=dict(_CONVENTION))


def _run(movie: xr.DataArray, params: Params, store: ResultsStore | None, path: str | None,
         given: dict | StoredShifts | None, template: Template | None) -> tuple[list[dict], Template, Any, int]:
    mp, cp = params.motion, params.compute
    tc = block_frames(movie.shape, cp.chunk_frames, movie.data.chunks[0][0])
    opts = kernel_options(mp)
    blocks, starts, lengths = _frame_blocks(movie, params, tc)
    if template is None:
        template_d = _template_graph(movie, blocks, starts, lengths, mp, opts, params.preprocess.check_nan)
    else:
        template_d = dask.delayed(template, pure=True)
    out = None
    if store is not None:
        compact = None if mp.save_movie != "compact" else ("codes" if compact_codes(movie.dtype) else "float32")
        if path is not None:
            _prepare_output(store, path, movie.shape, tc, cp.tile,
                            {"source": str(movie.attrs.get("source", "")), "fr": movie.attrs.get("fr")}, compact)
        records = given is None
        if records:
            _prepare_records(store, movie.shape, tc, mp)
        out = MovieOutput(store, path, compact == "codes", str(movie.dtype), records)
    halos = _halos(blocks, halo_width(mp) if given is None else 0)
    recs = [dask.delayed(_correct_block, pure=True)(b, template_d, t0=int(t0), opts=opts, nonneg=mp.nonneg_movie,
                                                    out=out, given=_given_slice(given, t0, tc), halo=halo)
            for b, t0, halo in zip(blocks, starts, halos)]
    small = [dask.delayed(_strip, pure=True)(r) for r in recs]
    sums = [([r[k] for r in recs], combine) for k in ("raw", "corrected")]
    tmpl, *recs_out, raw_t, cor_t = compute([template_d] + small, label="motion correction", urgent=1, sums=sums)
    return recs_out, tmpl, (raw_t, cor_t), tc


@dataclass(frozen=True)
class StoredShifts:
    """The per-frame shifts of a store's ``/motion``, read by each task for its own frames:
    a graph that warps the raw movie then holds no array as long as the session."""

    store: ResultsStore
    names: tuple[str, ...]

    @classmethod
    def of(cls, store: ResultsStore) -> StoredShifts:
        group = store.root(mode="r")["motion"]
        return cls(store, tuple(k for k in ("shifts", "shifts_rig", "patch_shifts") if k in group))

    def window(self, t0: int, n: int) -> ShiftWindow:
        return ShiftWindow(self, t0, n)


@dataclass(frozen=True)
class ShiftWindow:
    """Frames ``t0 .. t0 + n`` of :class:`StoredShifts`, read when a task loads them."""

    shifts: StoredShifts
    t0: int
    n: int

    def load(self) -> dict[str, np.ndarray | None]:
        got = {k: np.asarray(self.shifts.store.array(f"motion/{k}", mode="r")[self.t0:self.t0 + self.n])
               for k in self.shifts.names}
        return {k: got.get(k) for k in ("shifts", "shifts_rig", "patch_shifts")}


def _given_slice(given: dict | StoredShifts | None, t0: int, n: int) -> dict | ShiftWindow | None:
    if isinstance(given, StoredShifts):
        return given.window(t0, n)
    return None if given is None else {k: (v[t0:t0 + n] if v is not None else None) for k, v in given.items()}


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k in _RECORD}


MOVIE_PATH = "movie/corrected"


def _check_storage(mp: MotionParams, input_dtype: Any) -> None:
    if mp.save_movie == "compact" and mp.border_nan is True and compact_codes(input_dtype):
        raise ParamsError("motion.save_movie='compact' stores an integer movie as 16-bit codes, which hold no "
                          "NaN: set motion.border_nan to 'copy' or false, or motion.save_movie='float32'")


def motion_correct(movie: xr.DataArray, params: Params, *, store: ResultsStore | str | None = None,
                   storage_options: dict | None = None, path: str = MOVIE_PATH,
                   align: xr.DataArray | None = None) -> MotionResult:
    """Motion-correct ``movie`` (NoRMCorre rigid or piecewise-rigid) on the current Dask client.

    Parameters
    ----------
    movie : xarray.DataArray
        (frame, y, x), dask-backed (see :func:`calcium_dask.open_movie`).
    params : Params
        ``params.motion`` (CaImAn's names; ``save_movie`` says how the corrected movie is
        stored) and ``params.compute`` (chunking).
    store : ResultsStore or str, optional
        Results store to write ``/movie/corrected``, ``/motion`` and ``/summary`` into. A
        store where motion correction completed with the same parameters is opened, not
        recomputed. Without one, the corrected movie is recomputed lazily when accessed.
    path : str
        Where the corrected movie goes inside the store.
    align : xarray.DataArray, optional
        Another channel of the same frames (e.g. a static structural one) to compute the
        shifts on; ``movie`` is then warped by them (suite2p's ``align_by_chan``). The
        store's ``/summary`` describes ``movie``, ``/summary_align`` the other channel.

    Returns
    -------
    MotionResult
    """
    store = as_store(store, storage_options) if store is not None else None
    if store is not None:
        _check_storage(params.motion, movie.dtype)
    digest = params.digest("motion")
    if store is not None and path == MOVIE_PATH and store.completed("motion", digest):
        return stored_motion(store, movie)
    t_start = time.perf_counter()
    main = store is not None and path == MOVIE_PATH  # the store's own motion stage
    if main:
        store.clear_marks_from("motion")
        recorded = dict(store.root().attrs)
        source = recorded.get("input") or movie.attrs.get("source")  # a run of the pipeline named it already
        store.set_attrs(params=params.to_dict(), version=__version__, input=source, shape=list(movie.shape),
                        fr=movie.attrs.get("fr", params.data.fr))
    if align is not None:
        res = _aligned_by(movie, align, params, store, path, t_start)
    else:
        target = None if params.motion.save_movie == "none" else path
        recs, tmpl, (raw_t, cor_t), tc = _run(movie, params, store, target, None, None)
        res = _finish(movie, params, store, target, recs, tmpl, raw_t, cor_t, tc, None, t_start)
    if main:
        info = {"align_channel": int(align.attrs.get("channel", 0)) + 1} if align is not None else {}
        store.mark_complete("motion", res.seconds, params_digest=digest,
                            frames_per_s=round(movie.shape[0] / max(res.seconds, 1e-9), 1), **info)
    return res


def _aligned_by(movie: xr.DataArray, align: xr.DataArray, params: Params, store: ResultsStore | None,
                path: str, t_start: float) -> MotionResult:
    """Shifts registered on ``align``, applied to ``movie`` (the other channel's frames).

    With a store, the reference channel's tasks write its shifts into ``/motion`` (nothing
    of its movie is stored but its summary) and the movie's tasks read them back block by
    block: the client never holds the session's shifts."""
    if align.shape != movie.shape:
        raise ValueError(f"the alignment channel has shape {align.shape}, the movie {movie.shape}")
    if store is None:
        ref = motion_correct(align, params)
        res = apply_shifts(movie, ref.motion, params, path=path)
    else:
        ref_params = params.replace(**{"motion.save_movie": "none"})
        recs, tmpl, (raw_t, cor_t), tc = _run(align, ref_params, store, None, None, None)
        ref = _finish(align, ref_params, store, None, recs, tmpl, raw_t, cor_t, tc, None, t_start)
        res = _apply(movie, ref.motion, StoredShifts.of(store), params, store, path, t_start)
        store.write(res.summary, group="summary")
        store.write(res.summary_raw, group="summary_raw")
        store.write(ref.summary, group="summary_align")
    return MotionResult(ref.motion, res.corrected, res.summary_raw, res.summary, time.perf_counter() - t_start,
                        store)


def apply_shifts(movie: xr.DataArray, motion: xr.Dataset, params: Params, *,
                 store: ResultsStore | str | None = None, storage_options: dict | None = None,
                 path: str = "movie/corrected_apply") -> MotionResult:
    """Warp another movie (e.g. a second channel) by the shifts in ``motion``.

    ``motion`` is the ``/motion`` group of a results store (or ``MotionResult.motion``);
    the template's ``min_mov`` offset is not applied (the other channel has its own units).
    """
    t_start = time.perf_counter()
    if motion.sizes["frame"] != movie.shape[0]:
        raise ValueError(f"the shifts cover {motion.sizes['frame']} frames, the movie has {movie.shape[0]}")
    store = as_store(store, storage_options) if store is not None else None
    return _apply(movie, motion, _given(motion), params, store, path, t_start)


def _apply(movie: xr.DataArray, motion: xr.Dataset, given: dict | StoredShifts, params: Params,
           store: ResultsStore | None, path: str, t_start: float) -> MotionResult:
    """Warp ``movie`` by shifts held in memory (``given``) or in a store's ``/motion``."""
    if isinstance(given, StoredShifts):
        piecewise = "patch_shifts" in given.names
    else:
        piecewise = given["patch_shifts"] is not None
    save = "float32" if params.motion.save_movie == "none" else params.motion.save_movie  # no raw to warp again
    params = params.replace(**{"motion.pw_rigid": piecewise, "motion.nonneg_movie": False,
                               "motion.save_movie": save})
    # another channel's brightness is unknown: 16-bit codes span its dtype's whole range
    top = float(np.iinfo(movie.dtype).max) / HEADROOM if compact_codes(movie.dtype) else 0.0
    tmpl = Template(np.asarray(motion["template"].values), 0.0, top)
    recs, tmpl, (raw_t, cor_t), tc = _run(movie, params, store, path, given, tmpl)
    return _finish(movie, params, store, path, recs, tmpl, raw_t, cor_t, tc, given, t_start)


def _given(motion: xr.Dataset) -> dict[str, np.ndarray | None]:
    """Shifts held in memory (another channel's, not stored), read whole: a store's shifts
    are read task by task instead (:class:`StoredShifts`)."""
    with dask.config.set(scheduler="threads"):
        return {k: np.asarray(motion[k].values) if k in motion else None
                for k in ("shifts", "shifts_rig", "patch_shifts")}


def _finish(movie, params, store, path, recs, tmpl: Template, raw_t, cor_t, tc, given, t_start) -> MotionResult:
    summary_raw = summary_dataset(raw_t, offset=tmpl.template)
    offset = tmpl.template - (tmpl.min_mov if params.motion.nonneg_movie else 0.0)
    summary = summary_dataset(cor_t, offset=offset)
    if store is not None and path is not None and params.motion.save_movie == "compact" \
            and compact_codes(movie.dtype):
        scale, offset = compact_encoding(tmpl, movie.dtype, params.motion.nonneg_movie)
        store.set_array_attrs(path, scale_factor=scale, add_offset=offset)
    if store is not None and given is None:
        motion = _finish_records(store, tmpl, params)
        store.write(summary, group="summary")
        store.write(summary_raw, group="summary_raw")
    elif isinstance(given, StoredShifts):
        motion = store.read("motion")  # the shifts the tasks read: already there
    else:
        motion = _motion_dataset(recs, tmpl.template, params.motion, movie.shape)
        motion.attrs["min_mov"] = tmpl.min_mov
    if store is not None and path is not None:
        corrected = store.movie(path)
    else:
        shifts = given if given is not None else (StoredShifts.of(store) if store is not None else _given(motion))
        corrected = _lazy_corrected(movie, params, tmpl, tc, shifts)
    return MotionResult(motion, corrected, summary_raw, summary, time.perf_counter() - t_start, store)


def _finish_records(store: ResultsStore, tmpl: Template, params: Params) -> xr.Dataset:
    """Template and attributes of ``/motion``, whose per-frame arrays the tasks wrote."""
    store.write(xr.Dataset({"template": (("y", "x"), tmpl.template.astype(np.float32))}), group="motion", mode="a")
    store.set_group_attrs("motion", min_mov=tmpl.min_mov, max_mov=tmpl.max_mov, **_CONVENTION)
    return store.read("motion")


def stored_motion(store: ResultsStore, raw: xr.DataArray | None = None) -> MotionResult:
    """The MotionResult of a store where motion correction completed (nothing recomputed)."""
    seconds = float(store.stages().get("motion", {}).get("seconds", 0.0))
    return MotionResult(store.read("motion"), corrected_movie(store, raw), store.read("summary_raw"),
                        store.read("summary"), seconds, store)


def corrected_movie(store: ResultsStore, raw: xr.DataArray | None = None) -> xr.DataArray:
    """The motion-corrected movie of a store, lazily, however it was stored: read from
    ``/movie/corrected`` (float32 or compact), or, with ``save_movie="none"``, the raw
    movie (``raw``, else reopened from the store's ``input``) warped by the saved shifts,
    block by block, when read."""
    if "movie" in store.root(mode="r") and "corrected" in store.root(mode="r")["movie"]:
        return store.movie(MOVIE_PATH)
    if raw is None:
        from ..io import open_movie

        attrs = dict(store.root(mode="r").attrs)
        if not attrs.get("input"):
            raise StoreError(f"{store.url}: no corrected movie and no input recorded to recompute it from")
        raw = open_movie(attrs["input"], storage_options=store.storage_options or None,
                         **(attrs.get("open_kwargs") or {}))
    stored = attrs_params(store)
    motion = store.read("motion")
    tmpl = Template(np.asarray(motion["template"].values), float(motion.attrs.get("min_mov", 0.0)),
                    float(motion.attrs.get("max_mov", 0.0)))
    tc = block_frames(raw.shape, stored.compute.chunk_frames, raw.data.chunks[0][0])
    return _lazy_corrected(raw, stored, tmpl, tc, StoredShifts.of(store))


def attrs_params(store: ResultsStore) -> Params:
    """The parameters a store records (defaults where it records none)."""
    stored = store.root(mode="r").attrs.get("params")
    return Params.from_dict(stored, strict=False) if stored else Params()


def _lazy_corrected(movie: xr.DataArray, params: Params, tmpl: Template, tc: int,
                    given: dict | StoredShifts) -> xr.DataArray:
    """The corrected movie as a lazy dask array: each block warped by the saved shifts when read."""
    import dask.array as da

    opts = kernel_options(params.motion)
    blocks = []
    frames, starts, lengths = _frame_blocks(movie, params, tc)
    halos = _halos(frames, halo_width(params.motion) if given is None else 0)
    for b, t0, n, halo in zip(frames, starts, lengths, halos):
        rec = dask.delayed(_correct_block, pure=True)(b, tmpl, t0=int(t0), opts=opts, out=None, sums=False,
                                                      nonneg=params.motion.nonneg_movie,
                                                      given=_given_slice(given, t0, n), halo=halo)
        blocks.append(da.from_delayed(rec["frames"], (n,) + movie.shape[1:], dtype=np.float32))
    return xr.DataArray(da.concatenate(blocks), dims=("frame", "y", "x"), name="corrected",
                        attrs=dict(movie.attrs))
