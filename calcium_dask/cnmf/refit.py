"""The seeded CNMF on the whole field of view (CaImAn's ``refit``) as distributed passes.

No process holds the movie or a unit x frame array: traces live in a results store
(:class:`~calcium_dask.traces.TraceArrays`) and every step is a pass of tasks.

- A temporal update needs ``[A b]^T Y``: frame tasks compute it for their span of the
  movie and write it (``_aty_pass``). Units are coupled only through overlapping
  footprints and the background, so with the background traces held fixed each group of
  overlapping units is an independent problem: unit tasks deconvolve whole traces of
  their groups (one sweep of block coordinate descent, as :func:`update_temporal` does
  in memory), then frame tasks update the background traces given the units, and so on
  for ``ITER`` sweeps. This is the in-memory update's arithmetic in another order.
- A spatial update needs ``Y [C; f]^T`` on each footprint's search area and
  ``[C; f][C; f]^T``: frame tasks sum them over their span.
- Merging needs the correlation of overlapping pairs (moments summed over frame spans)
  and the traces of each merged group (unit tasks).

The client holds footprints, per-unit scalars and sparse or unit x unit matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import dask
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from ..compute import compute
from ..movie_blocks import FrameSource, iter_blocks
from ..params import Params
from ..traces import TraceArrays, gather_rows, pair_correlations, unit_spans
from .kernels.grid import interior
from .kernels.hals import background_traces
from .kernels.merge import merge_groups, merged_component, overlap_pairs
from .kernels.products import add_compensated, frames_dot_footprints, frames_dot_traces_parts
from .kernels.spatial import search_area, update_spatial
from .kernels.temporal import update_temporal

__all__ = ["refit", "RefitResult", "TraceState", "RingTerms", "temporal_update", "merge_pass", "temporal_options",
           "SEARCH_RADIUS"]

SEARCH_RADIUS = 2  # city-block dilation of the supports (CaImAn's 'dilate' search area)


def temporal_options(params: Params) -> dict[str, Any]:
    tp, pp = params.temporal, params.preprocess
    return dict(p=tp.p, bas_nonneg=tp.bas_nonneg, noise_range=pp.noise_range, noise_method=pp.noise_method,
                lags=pp.lags, fudge_factor=tp.fudge_factor, s_min=tp.s_min, optimize_g=tp.optimize_g)


@dataclass
class TraceState:
    """The current components: footprints here, traces in the store.

    ``A`` (N, K) csc footprints (pixel ``y * W + x``), ``b`` (N, nb) background
    footprints; ``C`` and ``f`` name the arrays of ``arrays`` holding their traces.
    """

    A: sp.csc_matrix
    b: np.ndarray
    arrays: TraceArrays
    C: str
    f: str

    @property
    def K(self) -> int:
        return int(self.A.shape[1])


@dataclass
class RefitResult:
    """The refit's components (CaImAn's names): traces are arrays of ``arrays``
    (``C``, ``S``, ``YrA``: units x frames; ``f``: background x frames), the rest is here.

    ``A`` (N, K) csc unit-norm footprints, pixel index ``y * W + x`` (C order);
    ``b`` (N, nb); ``g`` (K, p); ``bl``, ``c1``, ``neurons_sn`` (K,); ``sn`` (N,) pixel
    noise; ``dims`` (H, W).
    """

    A: sp.csc_matrix
    b: np.ndarray
    g: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    neurons_sn: np.ndarray
    sn: np.ndarray
    dims: tuple[int, int]
    arrays: TraceArrays
    C: str
    S: str
    YrA: str
    f: str


@dataclass
class RingTerms:
    """A background that depends on the units' traces: CNMF-E's ring model,
    ``B = constant + M (Y - A C)`` (:class:`~calcium_dask.cnmf.kernels.ring.PatchedRing`).

    The temporal update then needs ``A^T (Y - B) = (A - M^T A)^T Y - A^T constant +
    (M^T A)^T A C``: the first term from one pass over the movie with the footprints
    ``A - M^T A``, the others from the traces (the last, the units' light the ring takes
    into the background, refreshed before each sweep). ``adjoint(A)`` gives ``M^T A``.
    """

    adjoint: Callable[[sp.csc_matrix], sp.csc_matrix]
    constant: np.ndarray


@dataclass(frozen=True)
class _RingCoupling:
    """What the frame tasks of a ring refresh need: ``A^T constant`` (K,) and the
    leak ``(M^T A)^T A`` (K, K) sparse."""

    offset: np.ndarray
    leak: sp.csr_matrix


# -- tasks ------------------------------------------------------------------------------------
def _ring_span(arrays: TraceArrays, span: tuple[int, int], coupling: _RingCoupling,
               names: tuple[str, str, str]) -> None:
    """``A^T (Y - B)`` over one span of frames from ``(A - M^T A)^T Y`` and the traces."""
    aty, c, out = names
    X = arrays.read(aty, frames=span).astype(np.float64)
    X -= coupling.offset[:, None]
    X += coupling.leak @ arrays.read(c, frames=span).astype(np.float64)
    arrays.write(out, X, t0=span[0])


def _aty_span(source: FrameSource, span: tuple[int, int], A: sp.csc_matrix, b: np.ndarray,
              arrays: TraceArrays, name: str) -> None:
    """``[A b]^T Y`` over one span of frames, written to ``name``."""
    parts = [frames_dot_footprints(Y, A, b) for _, Y in iter_blocks(source, *span)]
    arrays.write(name, np.concatenate(parts, axis=1), t0=span[0])


@dataclass(frozen=True)
class _UnitBlock:
    """What a unit task of the temporal update needs about its units (rows ``u0:u1``).

    Blocks are chunks of units in the order of their groups of overlapping units; a group
    larger than a chunk spans several blocks, which a sweep updates one after the other
    (``chained``), each reading the traces of its units' neighbours in other blocks: the
    newest for those before it, the last sweep's for those after, as an in-memory sweep
    does. A task holds its own units and their neighbours whatever the size of the group.
    """

    u0: int
    u1: int
    groups: list[np.ndarray]  # local indices of each run of one group's units
    M: np.ndarray  # (n, n) AtA among the units (zero across groups)
    Mb: np.ndarray  # (n, nb) AtA of the units with the background
    before: np.ndarray  # units before u0 overlapping the block's (updated earlier in a sweep)
    M_before: np.ndarray  # (n, len(before))
    after: np.ndarray  # units from u1 on overlapping the block's (updated later in a sweep)
    M_after: np.ndarray  # (n, len(after))
    chained: bool  # the first unit's group began in the previous block: run after it


@dataclass
class _SweepOut:
    """Per-unit results of a sweep over one block, and its share of the convergence test."""

    bl: np.ndarray
    c1: np.ndarray
    g: np.ndarray
    sn: np.ndarray
    abs_sum: np.ndarray  # sum of |trace| of each unit (0: an empty trace)
    change: float  # sum of squared changes of the traces
    norm: float  # sum of squares of the new traces


def _neighbours(arrays: TraceArrays, blk: _UnitBlock, newer: str, older: str) -> np.ndarray:
    """``AtA`` times the traces of the block's neighbours in other blocks (n, T): those
    before it from ``newer``, those after it from ``older``."""
    out = np.zeros((blk.u1 - blk.u0, arrays.layout.n_frames))
    for idx, M, name in ((blk.before, blk.M_before, newer), (blk.after, blk.M_after, older)):
        if idx.size:
            out += M @ arrays.read_rows(name, idx).astype(np.float64)
    return out


def _sweep_block(arrays: TraceArrays, blk: _UnitBlock, names: tuple[str, str, str, str, str],
                 topts: dict[str, Any], previous: Any = None) -> _SweepOut:
    """One sweep of the temporal update over a block of units, the background held fixed.

    ``previous`` is the result of the block this one is chained to (unused: the task
    only has to run after it)."""
    aty, c_in, f, c_out, s_out = names
    span = (blk.u0, blk.u1)
    AtY = arrays.read(aty, units=span).astype(np.float64)
    C = arrays.read(c_in, units=span)
    if blk.Mb.shape[1]:
        AtY -= blk.Mb @ arrays.read(f).astype(np.float64)
    AtY -= _neighbours(arrays, blk, c_out, c_in)
    n, p = blk.u1 - blk.u0, topts["p"]
    Cn, Sn = np.zeros_like(C), np.zeros_like(C)
    out = _SweepOut(np.zeros(n), np.zeros(n), np.zeros((n, p)), np.zeros(n), np.zeros(n), 0.0, 0.0)
    for G in blk.groups:
        r = update_temporal(AtY[G], blk.M[np.ix_(G, G)], C[G], np.zeros((0, C.shape[1])), iterations=1, **topts)
        Cn[G], Sn[G] = r.C, r.S
        out.bl[G], out.c1[G], out.sn[G] = r.bl, r.c1, r.sn
        out.g[G] = np.asarray(r.g).reshape(len(G), p)
    del AtY
    out.abs_sum = np.abs(Cn).sum(axis=1, dtype=np.float64)
    out.change = float(np.sum(np.square(Cn - C, dtype=np.float64)))
    out.norm = float(np.sum(np.square(Cn, dtype=np.float64)))
    arrays.write(c_out, Cn, u0=blk.u0)
    arrays.write(s_out, Sn, u0=blk.u0)
    return out


def _background_span(arrays: TraceArrays, span: tuple[int, int], K: int, Mb: np.ndarray,
                     names: tuple[str, str, str, str]) -> None:
    """Background traces over one span given the units' traces (exact NNLS per frame)."""
    aty, c, f_in, f_out = names
    AtY_b = arrays.read(aty, units=(K, K + Mb.shape[0]), frames=span).astype(np.float64)
    if K:
        AtY_b -= Mb[:, :K] @ arrays.read(c, frames=span).astype(np.float64)
    f = background_traces(AtY_b, Mb[:, K:], arrays.read(f_in, frames=span).astype(np.float64))
    arrays.write(f_out, f, t0=span[0])


def _residual_block(arrays: TraceArrays, blk: _UnitBlock, names: tuple[str, str, str, str]) -> None:
    """``YrA = (AtY - AtA [C; f]) / diag(AtA)`` for a block of units."""
    aty, c, f, out = names
    span = (blk.u0, blk.u1)
    R = arrays.read(aty, units=span).astype(np.float64) - blk.M @ arrays.read(c, units=span)
    R -= _neighbours(arrays, blk, c, c)
    if blk.Mb.shape[1]:
        R -= blk.Mb @ arrays.read(f).astype(np.float64)
    d = np.diag(blk.M)
    arrays.write(out, np.where(d[:, None] > 0, R / np.where(d > 0, d, 1.0)[:, None], 0.0), u0=blk.u0)


def _yct_span(source: FrameSource, span: tuple[int, int], arrays: TraceArrays, names: tuple[str, str],
              mask: sp.csc_matrix) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Compensated ``Y [C; f]^T`` on ``mask`` and ``[C; f][C; f]^T`` over one span."""
    Cf = np.vstack([arrays.read(names[0], frames=span), arrays.read(names[1], frames=span)])
    total = None
    for t0, Y in iter_blocks(source, *span):
        part = frames_dot_traces_parts(Y, Cf[:, t0 - span[0]:t0 - span[0] + len(Y)], mask)
        total = part if total is None else add_compensated(total, part)
    C64 = Cf.astype(np.float64)
    return total, C64 @ C64.T


def _add_yct(parts: list) -> tuple:
    (hi, lo), cct = parts[0]
    total = (hi, lo)
    for p, c in parts[1:]:
        total = add_compensated(total, p)
        cct = cct + c
    return total, cct


def _merge_block(arrays: TraceArrays, c: str, out: str, g0: int, groups: list[np.ndarray],
                 footprints: list[sp.csc_matrix]) -> list[sp.csc_matrix]:
    """The merged component of each group (rows ``g0:`` of ``out``): footprints returned."""
    cols, rows = [], []
    for G, A_G in zip(groups, footprints):
        a, trace = merged_component(A_G, arrays.read_rows(c, G))
        cols.append(sp.csc_matrix(a[:, None]))
        rows.append(trace)
    arrays.write(out, np.vstack(rows), u0=g0)
    return cols


def _upsample_block(arrays: TraceArrays, name: str, low: str, u0: int, u1: int, factor: int) -> None:
    """Rows ``u0:u1`` of the patches' traces ``low`` (``factor`` frames averaged) repeated
    to the full rate as rows of ``name``."""
    T = arrays.layout.n_frames
    up = np.repeat(arrays.read(low, units=(u0, u1)), factor, axis=1)[:, :T]
    if up.shape[1] < T:
        last = up[:, -1:] if up.shape[1] else np.zeros((len(up), 1), np.float32)
        up = np.concatenate([up, np.repeat(last, T - up.shape[1], axis=1)], axis=1)
    arrays.write(name, up, u0=u0)


# -- passes -------------------------------------------------------------------------------------
def _write_initial(arrays: TraceArrays, name: str, X: np.ndarray, factor: int, dims: tuple[str, str]) -> None:
    """Write low-rate traces ``X`` (from the patches) at the full rate as array ``name``.

    ``X`` goes to the store first and each task reads its rows: in the graph it would pass
    through the scheduler (32 MiB for 160 units of 20,000 samples)."""
    arrays.create(name, len(X), dims=dims)
    spans = unit_spans(len(X), arrays.layout.unit_chunk)
    if not spans:
        return
    low = f"{name}_low"
    arrays.put(low, X, dims=(dims[0], "sample"))
    compute([dask.delayed(_upsample_block, pure=True)(arrays, name, low, u0, u1, factor) for u0, u1 in spans],
            label=f"refit: {name} at the full frame rate")
    arrays.delete(low)


def _aty_pass(source: FrameSource, st: TraceState, name: str, label: str,
              footprints: sp.csc_matrix | None = None) -> None:
    """``[A b]^T Y`` written as array ``name`` (``footprints`` in place of ``A`` if given)."""
    st.arrays.create(name, st.K + st.b.shape[1])
    A_ = dask.delayed(sp.csc_matrix(st.A if footprints is None else footprints, dtype=np.float32), pure=True)
    b_ = dask.delayed(np.asarray(st.b, np.float32), pure=True)
    compute([dask.delayed(_aty_span, pure=True)(source.restrict(*span), span, A_, b_, st.arrays, name)
             for span in st.arrays.layout.frame_spans()], label=label)


def _gram(A: sp.csc_matrix, b: np.ndarray) -> sp.csr_matrix:
    """``[A b]^T [A b]`` (sparse among units)."""
    Ab = sp.hstack([A, sp.csc_matrix(np.asarray(b, np.float64))]).tocsc().astype(np.float64)
    return sp.csr_matrix(Ab.T @ Ab)


def _unit_blocks(M: sp.csr_matrix, K: int, labels: np.ndarray, unit_chunk: int) -> list[_UnitBlock]:
    """Unit tasks' blocks: chunks of units (in group order), with their neighbours elsewhere."""
    out = []
    for u0, u1 in unit_spans(K, unit_chunk):
        sub = sp.csr_matrix(M[u0:u1, :K])
        lab = labels[u0:u1]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        groups = [np.arange(s, e) for s, e in zip(starts, np.r_[starts[1:], u1 - u0])]
        cols = np.unique(sub.indices)
        before, after = cols[cols < u0], cols[cols >= u1]
        out.append(_UnitBlock(u0, u1, groups, sub[:, u0:u1].toarray(), M[u0:u1, K:].toarray(),
                              before, sub[:, before].toarray(), after, sub[:, after].toarray(),
                              chained=bool(u0 > 0 and labels[u0] == labels[u0 - 1])))
    return out


def _group_order(A: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """An order of the units that makes each group of overlapping footprints contiguous
    (groups in the order of their first pixel, so neighbours share chunks), and each
    unit's group label in that order."""
    K = A.shape[1]
    S = (A != 0).astype(np.float32)
    n, labels = csgraph.connected_components(sp.csr_matrix(S.T @ S), directed=False)
    first = np.full(K, A.shape[0], np.int64)
    nz = np.diff(A.indptr) > 0
    first[nz] = A.indices[A.indptr[:-1][nz]]
    key = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(key, labels, first)
    order = np.lexsort((np.arange(K), labels, key[labels]))
    return order, labels[order]


@dataclass
class _Temporal:
    """A temporal update's per-unit results; traces in the arrays ``C``, ``S``, ``YrA``, ``f``."""

    bl: np.ndarray
    c1: np.ndarray
    g: np.ndarray
    sn: np.ndarray
    abs_sum: np.ndarray
    C: str
    S: str
    YrA: str
    f: str


def temporal_update(source: FrameSource, st: TraceState, topts: dict[str, Any], iterations: int,
                    label: str, tag: str, tol: float = 1e-3,
                    ring: RingTerms | None = None) -> tuple[TraceState, _Temporal]:
    """Distributed :func:`update_temporal`: units reordered so that overlapping ones are
    contiguous, then ``iterations`` sweeps of unit tasks and background frame tasks.

    With ``ring`` (CNMF-E's background, a function of the traces; ``st.b`` empty), each
    sweep is preceded by frame tasks that give ``A^T (Y - B)`` for the current traces
    (:class:`RingTerms`).

    Returns the state in the new unit order (footprints permuted, traces rewritten). The
    arrays written are named after ``tag``, so that two updates never read and write one.
    """
    arrays, K, nb = st.arrays, st.K, st.b.shape[1]
    order, labels = _group_order(st.A)
    if not np.array_equal(order, np.arange(K)):
        gather_rows(arrays, st.C, f"{tag}_c_ordered", order, label=f"{label}: order units")
        st = replace(st, A=st.A[:, order], C=f"{tag}_c_ordered")
    aty, s, yra = f"{tag}_aty", f"{tag}_s", f"{tag}_yra"
    coupling = None
    if ring is not None and K:
        MtA = ring.adjoint(st.A)
        _aty_pass(source, st, aty, f"{label}: (A - M^T A)^T Y", footprints=(st.A - MtA).tocsc())
        A64 = sp.csc_matrix(st.A, dtype=np.float64)
        coupling = _RingCoupling(np.asarray(A64.T @ np.asarray(ring.constant, np.float64)).ravel(),
                                 sp.csr_matrix(MtA.T @ A64))
    else:
        _aty_pass(source, st, aty, f"{label}: A^T Y")
    M = _gram(st.A, st.b)
    blocks = _unit_blocks(M, K, labels, arrays.layout.unit_chunk)
    Mb = M[K:].toarray()
    c, f = st.C, st.f
    outs: list[_SweepOut] = []
    unit_aty = aty
    for it in range(iterations):
        c_next, f_next = f"{tag}_c{it % 2}", f"{tag}_f{it % 2}"
        if coupling is not None:
            unit_aty = _ring_pass(arrays, coupling, (aty, c, f"{tag}_atyr"), f"{label}: sweep {it + 1}, ring")
        arrays.create(c_next, K)
        arrays.create(s, K)
        tasks: list[Any] = []
        for blk in blocks:
            tasks.append(dask.delayed(_sweep_block, pure=True)(arrays, blk, (unit_aty, c, f, c_next, s), topts,
                                                               tasks[-1] if blk.chained else None))
        outs = compute(tasks, label=f"{label}: sweep {it + 1}, units") if tasks else []
        if nb:
            arrays.create(f_next, nb, dims=("background", "frame"))
            compute([dask.delayed(_background_span, pure=True)(arrays, span, K, Mb, (aty, c_next, f, f_next))
                     for span in arrays.layout.frame_spans()], label=f"{label}: sweep {it + 1}, background")
            f = f_next
        c = c_next
        change, norm = sum(o.change for o in outs), sum(o.norm for o in outs)
        if K and np.sqrt(change) <= tol * np.sqrt(norm):
            break
    arrays.create(yra, K)
    if coupling is not None and blocks:
        unit_aty = _ring_pass(arrays, coupling, (aty, c, f"{tag}_atyr"), f"{label}: ring")
    if blocks:
        compute([dask.delayed(_residual_block, pure=True)(arrays, blk, (unit_aty, c, f, yra)) for blk in blocks],
                label=f"{label}: residuals")
    p = topts["p"]
    cat = (lambda name, shape: np.concatenate([getattr(o, name) for o in outs]) if outs else np.zeros(shape))
    tr = _Temporal(cat("bl", 0), cat("c1", 0), cat("g", (0, p)), cat("sn", 0), cat("abs_sum", 0), c, s, yra, f)
    return replace(st, C=c, f=f), tr


def _ring_pass(arrays: TraceArrays, coupling: _RingCoupling, names: tuple[str, str, str], label: str) -> str:
    """Frame tasks writing ``A^T (Y - B)`` of the traces ``names[1]`` as ``names[2]``."""
    arrays.create(names[2], len(coupling.offset))
    c_ = dask.delayed(coupling, pure=True)
    compute([dask.delayed(_ring_span, pure=True)(arrays, span, c_, names) for span in arrays.layout.frame_spans()],
            label=label)
    return names[2]


def spatial_update(source: FrameSource, st: TraceState, sn: np.ndarray, dims: tuple[int, int], params: Params,
                   label: str) -> tuple[TraceState, np.ndarray]:
    """Distributed spatial update: ``Y [C; f]^T`` on the search areas summed by frame tasks,
    then the footprints' regression here; traces rescaled to the new unit-norm footprints.
    Returns the new state and each kept unit's sum of absolute trace values."""
    arrays = st.arrays
    mask = search_area(st.A, dims, expand=SEARCH_RADIUS)
    if params.patch.border_pix:  # the border stays out of every footprint, as in the patches
        mask = sp.diags(interior(dims, params.patch.border_pix).astype(np.float32)) @ mask.astype(np.float32)
        mask.eliminate_zeros()
        mask = sp.csc_matrix(mask.astype(bool))
    N, nb = mask.shape[0], st.b.shape[1]
    full = sp.hstack([sp.csc_matrix(mask, dtype=bool), sp.csc_matrix(np.ones((N, nb), bool))]).tocsc()
    full.sort_indices()
    mask_ = dask.delayed(full, pure=True)
    parts = [dask.delayed(_yct_span, pure=True)(source.restrict(*span), span, arrays, (st.C, st.f), mask_)
             for span in arrays.layout.frame_spans()]
    (hi, lo), CCt = compute([], label=label, sums=[(parts, _add_yct)])[0]
    YCt = sp.csc_matrix(((hi + lo).astype(np.float32), full.indices, full.indptr), shape=full.shape)
    spo = params.spatial
    sres = update_spatial(YCt, CCt, st.A, st.b, dims=dims, sn=sn, mask=mask, thr_method=spo.thr_method,
                          maxthr=spo.maxthr, nrgthr=spo.nrgthr, extract_cc=spo.extract_cc,
                          update_background=spo.update_background_components)
    sums = gather_rows(arrays, st.C, "c_spatial", sres.keep, scale=sres.norms, label=f"{label}: rescale traces")
    return replace(st, A=sres.A, b=sres.b, C="c_spatial"), sums


def drop_units(st: TraceState, keep: np.ndarray, name: str, label: str) -> TraceState:
    """The state without the units not in ``keep`` (traces rewritten only when some go)."""
    if len(keep) == st.K:
        return st
    gather_rows(st.arrays, st.C, name, keep, label=label)
    return replace(st, A=st.A[:, keep], C=name)


def merge_pass(st: TraceState, merge_thr: float, max_merge_area: int | None, label: str) -> TraceState:
    """Merge overlapping, correlated units until none qualify (CaImAn's ``merge_components``,
    repeated): correlations from frame tasks, merged traces from unit tasks."""
    arrays, rounds = st.arrays, 0
    while st.K > 1:
        pairs = overlap_pairs(st.A)
        rho = pair_correlations(arrays.lazy(st.C), pairs, arrays.layout.frame_spans(),
                                label=f"{label}: correlations")
        groups = merge_groups(st.A, pairs, rho, merge_thr=merge_thr, max_merge_area=max_merge_area)
        if not groups:
            break
        rounds += 1
        arrays.create("merged", len(groups))
        chunk = arrays.layout.unit_chunk
        tasks = [dask.delayed(_merge_block, pure=True)(arrays, st.C, "merged", g0, groups[g0:g0 + chunk],
                                                       [st.A[:, G] for G in groups[g0:g0 + chunk]])
                 for g0 in range(0, len(groups), chunk)]
        cols = [a for part in compute(tasks, label=f"{label}: merged traces") for a in part]
        merged = np.zeros(st.K, bool)
        for G in groups:
            merged[G] = True
        kept = np.flatnonzero(~merged)
        rows = np.r_[kept, np.full(len(groups), -1)]
        name = f"c_merged{rounds % 2}"
        gather_rows(arrays, st.C, name, rows, extra="merged", extra_rows=np.r_[np.zeros(len(kept), int),
                    np.arange(len(groups))], label=f"{label}: merge")
        A = sp.hstack([st.A[:, kept], *cols]).tocsc().astype(np.float32)
        st = replace(st, A=A, C=name)
    return st


def refit(source: FrameSource, A: sp.csc_matrix, C: np.ndarray, b: np.ndarray, f: np.ndarray,
          sn: np.ndarray, dims: tuple[int, int], params: Params, arrays: TraceArrays, out: TraceArrays, *,
          tsub: int = 1) -> RefitResult:
    """Seeded CNMF on the whole field of view: temporal, spatial, merge, temporal.

    Parameters
    ----------
    source : FrameSource
        Where tasks read the (corrected) movie (:func:`~calcium_dask.movie_blocks.frame_source`).
    A, C, b, f : arrays
        Seed components (e.g. from :func:`~calcium_dask.cnmf.patches.fit_patches`); ``C``
        and ``f`` at a rate ``tsub`` times lower than the movie's.
    sn : (N,) array
        Pixel noise.
    dims : (H, W)
    params : Params
    arrays : TraceArrays
        Where intermediate traces go (a scratch group of the results store).
    out : TraceArrays
        Where the final ``traces``, ``spikes``, ``residuals`` and ``background_traces`` go
        (the results' root group), with the same layout.

    Returns
    -------
    RefitResult
    """
    topts = temporal_options(params)
    iterations = params.temporal.ITER
    _write_initial(arrays, "c_initial", np.asarray(C, np.float32), tsub, ("unit", "frame"))
    _write_initial(arrays, "f_initial", np.asarray(f, np.float32), tsub, ("background", "frame"))
    st = TraceState(sp.csc_matrix(A, dtype=np.float32), np.asarray(b, np.float32), arrays, "c_initial", "f_initial")
    if st.K:
        st, _ = temporal_update(source, st, topts, iterations, "refit: temporal update", "first")
        st, sums = spatial_update(source, st, sn, dims, params, "refit: spatial update")
        st = drop_units(st, np.flatnonzero(sums > 0), "c_nonempty", "refit: drop empty units")
        if params.merging.do_merge:
            st = merge_pass(st, params.merging.merge_thr, params.merging.max_merge_area, "refit: merge")
    if st.K == 0:
        return _empty(st, sn, dims, params.temporal.p, out)
    st, tr = temporal_update(source, st, topts, iterations, "refit: final temporal update", "final")
    return _finish(st, tr, sn, dims, out)


OUTPUT_NAMES = {"C": "traces", "S": "spikes", "YrA": "residuals", "f": "background_traces"}


def _finish(st: TraceState, tr: _Temporal, sn: np.ndarray, dims: tuple[int, int], out: TraceArrays) -> RefitResult:
    """Write the final traces to ``out`` (the results' arrays), without the units left with
    an empty trace or footprint (CaImAn's ``remove_empty``)."""
    keep = np.flatnonzero((tr.abs_sum > 0) & (np.diff(st.A.indptr) > 0))
    for key, src in (("C", tr.C), ("S", tr.S), ("YrA", tr.YrA)):
        gather_rows(st.arrays, src, OUTPUT_NAMES[key], keep, dst_arrays=out,
                    label=f"refit: write {OUTPUT_NAMES[key]}")
    gather_rows(st.arrays, tr.f, OUTPUT_NAMES["f"], np.arange(st.b.shape[1]), dst_arrays=out,
                dims=("background", "frame"), label="refit: write background traces")
    return RefitResult(st.A[:, keep], st.b, tr.g[keep], tr.bl[keep], tr.c1[keep], tr.sn[keep],
                       np.asarray(sn, np.float32), dims, out, *OUTPUT_NAMES.values())


def _empty(st: TraceState, sn: np.ndarray, dims: tuple[int, int], p: int, out: TraceArrays) -> RefitResult:
    for name in ("traces", "spikes", "residuals"):
        out.create(name, 0)
    gather_rows(st.arrays, st.f, OUTPUT_NAMES["f"], np.arange(st.b.shape[1]), dst_arrays=out,
                dims=("background", "frame"), label="refit: write background traces")
    e = np.zeros(0)
    return RefitResult(sp.csc_matrix((st.A.shape[0], 0), dtype=np.float32), st.b, np.zeros((0, p)), e, e.copy(),
                       e.copy(), np.asarray(sn, np.float32), dims, out, *OUTPUT_NAMES.values())
