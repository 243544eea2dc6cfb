"""CNMF-E's ring model of the background of one-photon movies, on one patch.

The background of a pixel is its constant baseline plus a weighted sum of the fluctuations
of the pixels on a ring around it, a ring wider than a neuron so that it sees the
out-of-focus light that also lies on the pixel but none of the pixel's own neuron:

``B = b0 1^T + U W D (Y - A C - b0 1^T)``

with ``D`` the block mean over ``ssub_B x ssub_B`` pixels, ``W`` the ring weights between
blocks and ``U`` the bilinear interpolation of the blocks back onto the pixels. A pixel index is
``y * w + x``; movies here are (T, N), time first.

References
----------
Zhou P, Resendez SL, Rodriguez-Romaguera J, et al. 2018, eLife 7:e28728,
doi:10.7554/eLife.28728 (Methods, "Background model").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["PatchedRing", "RingModel", "block_matrices", "block_mean", "fit_ring", "ring_offsets", "ring_radius"]

RIDGE = 1e-5  # added to the diagonal of each pixel's system, times its trace (a tiny ridge)
BATCH_ENTRIES = 4_000_000  # entries of the stacked ring systems solved at once (32 MB)


def ring_radius(gSiz: float, ring_size_factor: float, ssub_B: int) -> int:
    """Radius of the ring, in blocks of ``ssub_B`` pixels (at least 1)."""
    return max(1, int(round(ring_size_factor * gSiz / ssub_B)))


def ring_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """``(dy, dx)`` of the pixels at distance in ``[radius, radius + 1)`` from the centre."""
    r = int(radius)
    dy, dx = np.mgrid[-r - 1:r + 2, -r - 1:r + 2]
    d = np.hypot(dy, dx)
    on = (d >= r) & (d < r + 1)
    return dy[on], dx[on]


def _bilinear_1d(n: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel -> (lower block, upper block, weight of the upper) along one axis: linear
    interpolation between block centres, held at the edges."""
    nb = -(-n // s)
    pos = np.clip((np.arange(n) + 0.5) / s - 0.5, 0, nb - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, nb - 1)
    return lo, hi, pos - lo


def block_matrices(dims: tuple[int, int], ssub_B: int) -> tuple[sp.csr_matrix, sp.csr_matrix, tuple[int, int]]:
    """``D`` (n_blocks, N), the mean of each block's pixels, and ``U`` (N, n_blocks), the
    bilinear interpolation of the blocks at each pixel (a smooth background has no block
    edges); blocks at the right and bottom edges may be smaller."""
    h, w = dims
    s = int(ssub_B)
    bh, bw = -(-h // s), -(-w // s)
    yy, xx = np.divmod(np.arange(h * w), w)
    block = (yy // s) * bw + xx // s
    counts = np.bincount(block, minlength=bh * bw).astype(np.float32)
    D = sp.csr_matrix((1.0 / counts[block], (block, np.arange(h * w))), shape=(bh * bw, h * w))
    ly, uy, fy = _bilinear_1d(h, s)
    lx, ux, fx = _bilinear_1d(w, s)
    rows = np.repeat(np.arange(h * w), 4)
    cols = np.stack([ly[yy] * bw + lx[xx], ly[yy] * bw + ux[xx], uy[yy] * bw + lx[xx], uy[yy] * bw + ux[xx]], 1)
    wts = np.stack([(1 - fy[yy]) * (1 - fx[xx]), (1 - fy[yy]) * fx[xx], fy[yy] * (1 - fx[xx]), fy[yy] * fx[xx]], 1)
    U = sp.csr_matrix((wts.ravel().astype(np.float32), (rows, cols.ravel())), shape=(h * w, bh * bw))
    return D, U, (bh, bw)


@dataclass
class RingModel:
    """The ring background of a patch.

    Attributes
    ----------
    W : (n_blocks, n_blocks) csr float32
        Ring weights between blocks of ``ssub_B`` pixels (block index ``by * bw + bx``).
    b0 : (N,) float32
        Constant baseline of each pixel.
    dims : (h, w)
    ssub_B : int
    """

    W: sp.csr_matrix
    b0: np.ndarray
    dims: tuple[int, int]
    ssub_B: int

    def _blocks(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        D, U, _ = block_matrices(self.dims, self.ssub_B)
        return D, U

    def operator(self) -> sp.csr_matrix:
        """``M = U W D`` (N, N): the fluctuation each pixel's background takes from the ring."""
        D, U = self._blocks()
        return (U @ self.W @ D).tocsr()

    def background(self, Y: np.ndarray, AC: np.ndarray | None = None) -> np.ndarray:
        """``B`` (T, N) float32 of frames ``Y`` (T, N) given the neurons' part ``AC`` (T, N)."""
        X = np.asarray(Y, np.float32) - self.b0
        if AC is not None:
            X -= AC
        _, U = self._blocks()
        fluct = self.W @ block_mean(X, self.dims, self.ssub_B).T  # (n_blocks, T)
        out = np.ascontiguousarray((U @ fluct).T, dtype=np.float32)
        out += self.b0
        return out


def fit_ring(Y: np.ndarray, AC: np.ndarray | None, *, dims: tuple[int, int], radius: int,
             ssub_B: int = 2) -> RingModel:
    """Fit the ring model to a patch: ``min_W ||X - W X||`` for ``X = D (Y - A C - b0 1^T)``.

    Parameters
    ----------
    Y : ndarray (T, N)
        The patch movie.
    AC : ndarray (T, N), optional
        The neurons' part of it (their footprints times traces); None: no neuron.
    dims : (h, w)
    radius : int
        Ring radius in blocks (:func:`ring_radius`).
    ssub_B : int
        Block size, pixels (CaImAn's ``ssub_B``): the background is smooth, so it is
        modelled on a coarser grid, which makes the fit ``ssub_B**4`` times cheaper.

    Returns
    -------
    RingModel

    Notes
    -----
    ``b0`` is each pixel's temporal mean of ``Y - A C``. The weights of block ``i`` solve
    the least squares of its fluctuation on those of the blocks on its ring (Zhou et al.
    2018), from the Gram matrix ``X X^T`` of the blocks, computed once: each block's system
    is the Gram matrix's rows and columns of its ring. A tiny ridge (``1e-5`` times the
    trace) keeps it solvable when ring blocks are alike. Rings are cut at the patch's edge.
    """
    Y = np.asarray(Y, np.float32)
    R = Y if AC is None else Y - np.asarray(AC, np.float32)
    b0 = R.mean(axis=0)
    bh, bw = -(-dims[0] // ssub_B), -(-dims[1] // ssub_B)
    X = block_mean(R, dims, ssub_B).astype(np.float64)
    X -= X.mean(axis=0)  # = D (R - b0)
    G = X.T @ X
    rows, cols, vals = _ring_weights(G, (bh, bw), radius)
    n = bh * bw
    W = sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)
    return RingModel(W, b0.astype(np.float32), tuple(dims), int(ssub_B))


def _ring_weights(G: np.ndarray, grid: tuple[int, int], radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each block's least-squares weights on its ring from the Gram matrix ``G`` of the
    blocks, all blocks in one batched solve (a ring cut by the patch's edge gets identity
    rows where its missing blocks would be, so their weights are 0). Returns COO rows,
    columns and values of the weights that exist."""
    bh, bw = grid
    dy, dx = ring_offsets(radius)
    by, bx = np.divmod(np.arange(bh * bw), bw)
    ry, rx = by[:, None] + dy, bx[:, None] + dx
    inside = (ry >= 0) & (ry < bh) & (rx >= 0) & (rx < bw)
    ring = np.where(inside, ry * bw + rx, 0)
    rows, cols, vals = [], [], []
    step = max(1, BATCH_ENTRIES // (ring.shape[1] ** 2))
    m = np.arange(ring.shape[1])
    for lo in range(0, bh * bw, step):
        rg, ok = ring[lo:lo + step], inside[lo:lo + step]
        both = ok[:, :, None] & ok[:, None, :]
        M = np.where(both, G[rg[:, :, None], rg[:, None, :]], 0.0)
        M[:, m, m] += _ridge(M)
        M[:, m, m] = np.where(ok, M[:, m, m], 1.0)
        rhs = np.where(ok, G[rg, np.arange(lo, lo + len(rg))[:, None]], 0.0)
        w = np.linalg.solve(M, rhs[..., None])[..., 0]
        i = np.broadcast_to(np.arange(lo, lo + len(rg))[:, None], rg.shape)
        rows.append(i[ok])
        cols.append(rg[ok])
        vals.append(w[ok])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _ridge(M: np.ndarray) -> np.ndarray:
    """The ridge added to the diagonal of each (stacked) system: RIDGE times its trace."""
    tr = np.trace(M, axis1=-2, axis2=-1)
    return (RIDGE * np.maximum(tr, np.finfo(np.float64).tiny))[:, None]


def block_mean(frames: np.ndarray, dims: tuple[int, int], ssub_B: int) -> np.ndarray:
    """``D`` applied to frames (T, N): the mean of each block of ``ssub_B`` pixels, (T, n_blocks)
    float32 (blocks at the right and bottom edges average the pixels they have)."""
    h, w = dims
    s = int(ssub_B)
    T = len(frames)
    X = np.asarray(frames, np.float32).reshape(T, h, w)
    bh, bw = -(-h // s), -(-w // s)
    if h % s or w % s:
        X = np.pad(X, ((0, 0), (0, bh * s - h), (0, bw * s - w)))
    rows = sum(X[:, i::s] for i in range(s))  # strided adds: no reduction over scattered axes
    sums = sum(rows[:, :, j::s] for j in range(s))
    counts = np.minimum(s, h - s * np.arange(bh))[:, None] * np.minimum(s, w - s * np.arange(bw))[None, :]
    return (sums / counts.astype(np.float32)).reshape(T, bh * bw)


Box = tuple[int, int, int, int]  # (y0, y1, x0, x1)


@dataclass
class PatchedRing:
    """The ring background of a whole field of view, one :class:`RingModel` per patch:
    each pixel's background is that of the patch whose own tile holds it.

    Attributes
    ----------
    boxes, owns : list of (y0, y1, x0, x1)
        Each patch and the tile it owns (tiles cover the field without overlap).
    models : list of RingModel
        Each patch's ring, in the patch's own pixels.
    dims : (H, W)
    """

    boxes: list[Box]
    owns: list[Box]
    models: list[RingModel]
    dims: tuple[int, int]

    def _pieces(self):
        """Per patch: global index of its pixels (N_p,), and the local index of its own pixels."""
        H, W = self.dims
        for box, own, model in zip(self.boxes, self.owns, self.models):
            y0, y1, x0, x1 = box
            yy, xx = np.mgrid[y0:y1, x0:x1]
            pixels = (yy * W + xx).ravel()
            mine = ((yy >= own[0]) & (yy < own[1]) & (xx >= own[2]) & (xx < own[3])).ravel()
            yield pixels, np.flatnonzero(mine), model

    def b0(self) -> np.ndarray:
        """(N,) float32: each pixel's baseline, from the patch that owns it."""
        out = np.zeros(self.dims[0] * self.dims[1], np.float32)
        for pixels, mine, model in self._pieces():
            out[pixels[mine]] = model.b0[mine]
        return out

    def constant(self) -> np.ndarray:
        """(N,) float32: the background of a movie that is 0 everywhere, ``B(0)``.

        The background is affine in the movie, ``B = constant + M (Y - A C)``; each patch
        takes its ring's fluctuations around its own baselines, so ``constant = b0 - M b0'``
        with ``b0'`` the patches' baselines (in the overlaps, not those of the owner)."""
        N = self.dims[0] * self.dims[1]
        return self.background(np.zeros((1, N), np.float32))[0]

    def adjoint(self, A: sp.spmatrix) -> sp.csc_matrix:
        """``M^T A`` (N, K), ``M`` the linear part of the background (``B = constant + M (Y -
        A C)``, see :meth:`constant`): each patch's ``D^T W^T U^T`` of the rows of ``A`` in
        its own tile, added over the patches (whose rings overlap)."""
        A = sp.csr_matrix(A, dtype=np.float64)
        N, K = A.shape
        parts = []
        for pixels, mine, model in self._pieces():
            rows = np.zeros((len(pixels), K))
            rows[mine] = A[pixels[mine]].toarray()
            if not rows.any():
                continue
            D, U, _ = block_matrices(model.dims, model.ssub_B)
            local = sp.coo_matrix(D.T @ (model.W.T @ (U.T @ rows)))
            parts.append(sp.csr_matrix((local.data, (pixels[local.row], local.col)), shape=(N, K)))
        out = sum(parts, sp.csr_matrix((N, K), dtype=np.float64))
        out.eliminate_zeros()
        return sp.csc_matrix(out)

    def background(self, Y: np.ndarray, AC: np.ndarray | None = None) -> np.ndarray:
        """``B`` (T, N) float32 of frames ``Y`` (T, N) given the neurons' part ``AC`` (T, N)."""
        out = np.empty(np.shape(Y), np.float32)
        for pixels, mine, model in self._pieces():
            part = model.background(Y[:, pixels], None if AC is None else AC[:, pixels])
            out[:, pixels[mine]] = part[:, mine]
        return out
