"""CNMF on patches and the seeded refit as dask graphs, on a small planted movie."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

from calcium_dask.cnmf import fit, refit
from calcium_dask.cnmf.kernels.grid import interior, own_boxes, patch_boxes
from calcium_dask.cnmf.patches import PatchComponents, _collect, patch_groups
from calcium_dask.params import Params

from .cnmf_sim import _calcium, corr, footprint

DIMS = (50, 50)
# centres on both sides of the patch borders (patches 0:30 and 20:50, tiles split at 25)
CENTERS = ((10, 10), (12, 38), (24, 24), (27, 9), (38, 30), (40, 42), (22, 44))


pytestmark = pytest.mark.usefixtures("sync_quiet")


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(7)
    T = 400
    A = np.stack([footprint(c, DIMS, sigma=2.5, radius=5.0) for c in CENTERS], 1)
    C = _calcium(rng, len(CENTERS), T, 0.03, (6.0, 12.0))
    yy, xx = np.mgrid[: DIMS[0], : DIMS[1]]
    b = (20 + 5 * np.cos(xx / 9.0) + 3 * np.sin(yy / 11.0)).ravel()
    f = 1 + 0.1 * np.sin(np.arange(T) / 50.0)
    Y = A @ C + np.outer(b, f) + 0.6 * rng.standard_normal((A.shape[0], T))
    movie = np.ascontiguousarray(Y.T.reshape(T, *DIMS), np.float32)
    return movie, A, C


def _movie(arr, chunks):
    return xr.DataArray(da.from_array(arr, chunks=chunks), dims=("frame", "y", "x"))


def _params(**kw):
    d = {"fr": 30.0, "decay_time": 0.3, "rf": 15, "stride": 10, "K": 4, "gSig": (2, 2), "p": 1,
         "nb": 1, "merge_thr": 0.85, "only_init": True, "ssub": 1, "tsub": 1}
    return Params.from_caiman({**d, **kw})


def _recovered(A, C, planted):
    _, A0, C0 = planted
    C = np.asarray(C)
    Ad = A.toarray() if sp.issparse(A) else A
    M = np.corrcoef(np.hstack([A0, Ad]).T)[: A0.shape[1], A0.shape[1]:]
    best = M.argmax(1)
    traces = [corr(C[j], C0[k]) for k, j in enumerate(best)]
    return M.max(1), np.array(traces), best


def test_own_tiles_cover_the_field_once_inside_their_patches():
    boxes = patch_boxes((128, 100), 15, 10)
    tiles = own_boxes(boxes)
    cover = np.zeros((128, 100), int)
    for (y0, y1, x0, x1), (a0, a1, b0, b1) in zip(boxes, tiles):
        assert y0 <= a0 < a1 <= y1 and x0 <= b0 < b1 <= x1
        cover[a0:a1, b0:b1] += 1
    assert (cover == 1).all()


def test_patch_groups_keep_every_patch_once_and_respect_the_budget():
    boxes = patch_boxes((128, 128), 15, 10)
    groups = patch_groups(boxes, 1000, budget=1e12)
    assert sorted(i for g in groups for i in g) == list(range(len(boxes)))
    assert max(len(g) for g in groups) == 4
    assert all(len(g) == 1 for g in patch_groups(boxes, 1000, budget=1.0))


def test_overlapping_patch_backgrounds_average_instead_of_adding():
    # two patches sharing columns 20:30, each with the same flat background
    dims = (10, 50)
    results = []
    for x0 in (0, 20):
        cols = np.arange(x0, x0 + 30)
        pix = (np.arange(10)[:, None] * 50 + cols[None, :]).ravel()
        results.append(PatchComponents(rows=np.zeros(0, int), cols=np.zeros(0, int), vals=np.zeros(0, np.float32),
                                       K=0, C=np.zeros((0, 5), np.float32), pixels=pix,
                                       b=np.full((300, 1), 3.0, np.float32), f=np.ones((1, 5), np.float32),
                                       sn=np.ones(300, np.float32)))
    _, _, b_all, f_all, _ = _collect(results, dims)
    np.testing.assert_allclose(b_all @ f_all, 3.0)  # was 6 in the overlap


def test_each_neuron_found_once_with_its_trace(planted):
    movie, A0, _ = planted
    params = _params()
    ps = fit(_movie(movie, (100, 25, 50)), params)
    fp, _, best = _recovered(ps.A, ps.C, planted)
    assert fp.min() > 0.8 and len(set(best.tolist())) == len(CENTERS)
    est = refit(_movie(movie, (100, 25, 50)), ps, params)
    fp, tr, best = _recovered(est.A, est.C, planted)
    assert fp.min() > 0.9 and tr.min() > 0.9 and len(set(best.tolist())) == len(CENTERS)
    assert est.A.shape[1] <= len(CENTERS) + 2


def test_same_components_whatever_the_chunking(planted):
    movie, _, _ = planted
    params = _params()
    runs = []
    for chunks in ((400, 50, 50), (64, 17, 50)):
        mov = _movie(movie, chunks)
        ps = fit(mov, params)
        est = refit(mov, ps, params)
        runs.append((ps, est))
    (p1, e1), (p2, e2) = runs
    assert (p1.A != p2.A).nnz == 0
    np.testing.assert_array_equal(p1.C, p2.C)
    assert e1.A.shape == e2.A.shape
    np.testing.assert_allclose(e1.A.toarray(), e2.A.toarray(), atol=1e-6)
    C1, C2 = np.asarray(e1.C), np.asarray(e2.C)
    np.testing.assert_allclose(C1, C2, rtol=1e-4, atol=1e-4 * np.abs(C1).max())


def test_whole_field_downsampled_initialisation(planted):
    movie, _, _ = planted
    params = _params(rf=None, stride=None, K=10, ssub=2, tsub=2)
    mov = _movie(movie, (100, 50, 50))
    ps = fit(mov, params)
    assert len(ps.boxes) == 1 and ps.C.shape[1] == movie.shape[0]
    est = refit(mov, ps, params)
    fp, tr, best = _recovered(est.A, est.C, planted)
    assert fp.min() > 0.8 and tr.min() > 0.8 and len(set(best.tolist())) == len(CENTERS)


def test_own_tiles_stay_inside_the_border():
    boxes = patch_boxes((128, 100), 15, 10, border=6)
    tiles = own_boxes(boxes)
    cover = np.zeros((128, 100), int)
    for (y0, y1, x0, x1), (a0, a1, b0, b1) in zip(boxes, tiles):
        assert 6 <= y0 and y1 <= 122 and 6 <= x0 and x1 <= 94 and y1 - y0 == x1 - x0 == 30
        assert y0 <= a0 < a1 <= y1 and x0 <= b0 < b1 <= x1
        cover[a0:a1, b0:b1] += 1
    assert (cover[6:122, 6:94] == 1).all() and cover.sum() == 116 * 88
    assert patch_boxes((50, 50), None, None, border=3) == [(3, 47, 3, 47)]
    with pytest.raises(ValueError, match="border_pix 25"):
        patch_boxes((50, 50), 15, 10, border=25)


def test_border_pix_keeps_footprints_off_the_border(planted):
    """CaImAn's ``border_pix``: no component is found in, or grows into, the border."""
    movie, A0, _ = planted
    params = _params(border_pix=8)
    mov = _movie(movie, (100, 25, 50))
    ps = fit(mov, params)
    est = refit(mov, ps, params)
    for A in (ps.A, est.A):
        rim = ~interior(DIMS, 8)
        assert A.shape[1] > 0 and abs(sp.csr_matrix(A)[np.flatnonzero(rim)]).sum() == 0
    # the neurons clear of the border are still found
    inner = [k for k, (y, x) in enumerate(CENTERS) if min(y, x, DIMS[0] - y, DIMS[1] - x) >= 14]
    best = np.corrcoef(np.hstack([A0[:, inner], est.A.toarray()]).T)[:len(inner), len(inner):].max(1)
    assert (best > 0.9).all(), best


def test_the_task_budget_leaves_the_smallest_worker_below_its_spill_threshold(monkeypatch):
    import distributed

    from calcium_dask.cnmf import patches
    from calcium_dask.params import Params

    class FakeClient:
        def scheduler_info(self):
            return {"workers": {"a": {"memory_limit": 4 * 2**30}, "b": {"memory_limit": 2 * 2**30},
                                "c": {"memory_limit": 0}}}  # 0: no limit

    import dask

    monkeypatch.setattr(distributed, "get_client", lambda: FakeClient())
    params = Params.from_dict({"patch.memory_fact": 1.5})
    with dask.config.set(scheduler=None):  # the client's workers run the tasks
        assert patches.task_budget(params) == (0.7 * 2 * 2**30 - patches.WORKER_BASELINE) * 1.5
        with dask.config.set({"distributed.worker.memory.spill": 0.6}):
            assert patches.task_budget(params) == (0.6 * 2 * 2**30 - patches.WORKER_BASELINE) * 1.5
        with dask.config.set({"distributed.worker.memory.spill": 0.4}):  # below the floor
            assert patches.task_budget(params) == patches.MIN_SHARE * 2 * 2**30 * 1.5
        with dask.config.set({"distributed.worker.memory.spill": False, "distributed.worker.memory.pause": 0.8}):
            assert patches.task_budget(params) == (0.8 * 2 * 2**30 - patches.WORKER_BASELINE) * 1.5
    with dask.config.set(scheduler="synchronous"):  # tasks run here: the workers' limits do not apply
        assert patches.task_budget(params) == patches.PATCH_BUDGET * 1.5
    monkeypatch.setattr(distributed, "get_client", lambda: (_ for _ in ()).throw(ValueError("no client")))
    with dask.config.set(scheduler=None):
        assert patches.task_budget(params) == patches.PATCH_BUDGET * 1.5
    # a small worker: a quarter of its limit, whatever its own memory takes
    assert patches.worker_share(2**30) == patches.MIN_SHARE * 2**30


def test_fitting_a_patch_takes_at_most_fit_copies_of_its_data():
    """The working memory the budget assumes (numpy's allocations, traced: deterministic)."""
    import tracemalloc

    from calcium_dask.cnmf.kernels.fit import fit_patch
    from calcium_dask.cnmf.patches import FIT_COPIES, patch_options
    from calcium_dask.params import Params

    rng = np.random.default_rng(0)
    T, h, w = 4000, 31, 31
    Y = rng.normal(100, 5, size=(T, h, w)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    for cy, cx in [(8, 9), (20, 22), (15, 5)]:
        spikes = (rng.random(T) < 0.01).astype(np.float32)
        trace = np.convolve(spikes, np.exp(-np.arange(60) / 15), mode="full")[:T] * 30
        Y += trace[:, None, None].astype(np.float32) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
    tracemalloc.start()
    res = fit_patch(Y, own=(0, h, 0, w), **patch_options(Params()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.A.shape[1] >= 3
    assert peak <= FIT_COPIES * Y.nbytes, f"peak {peak / Y.nbytes:.1f} copies of the patch's data"


def test_a_long_session_is_averaged_enough_that_blocks_of_neighbours_stay_whole(monkeypatch):
    """Falling back to one patch per task would read each tile of the movie several times
    more per frame in a long session than in a short one."""
    from calcium_dask.cnmf import patches
    from calcium_dask.params import Params

    monkeypatch.setattr(patches, "task_budget", lambda params: 2**30)
    boxes = patch_boxes((256, 256), 15, 10)
    blocks = patches.patch_groups(boxes, 0, 2**30)
    for t in (20_000, 60_000, 200_000):
        tsub = patches.patch_tsub((t, 256, 256), Params())
        assert patches.patch_groups(boxes, t // tsub, 2**30) == blocks
        assert all(patches._group_bytes(t // tsub, [boxes[i] for i in g]) <= 2**30 for g in blocks)
    assert patches.patch_tsub((20_000, 256, 256), Params()) == 1  # a short session is not averaged


def test_patches_averaged_for_memory_report_the_movies_pixel_noise(planted, monkeypatch):
    """Patches fitted on averages of 4 frames (a small task budget) report the noise of the
    movie's pixels (0.6 planted), not of the averages (half that): the refit's spatial
    update and the stored ``pixel_noise`` are at the movie's rate."""
    from calcium_dask.cnmf import patches

    movie, _, _ = planted
    params = _params()
    boxes = patch_boxes(DIMS, 15, 10)
    need = max(patches._group_bytes(len(movie), [boxes[i] for i in g]) for g in patch_groups(boxes, 0, 2**40))
    monkeypatch.setattr(patches, "task_budget", lambda p: need / 3.5)
    ps = patches.fit_patches(_movie(movie, (100, 50, 50)), params)
    assert ps.tsub == 4
    noise = np.median(ps.sn[ps.sn > 0])
    assert abs(noise - 0.6) < 0.1, noise
