"""Train the shape classifier on simulated footprints and write its weights.

    python -m calcium_dask.train_classifier --out calcium_dask/evaluation/kernels/shape_classifier.npz

Examples are drawn shapes: the true footprints of simulated movies (several presets,
soma radii and seeds) degraded like CNMF estimates, against the false positives of
:mod:`calcium_dask.evaluation.kernels.shapes`; seeds in ``HELDOUT_SEEDS`` and a separate random
stream are kept for the report. The classifier is also scored on what it meets in use:
the pipeline (motion correction, CNMF on patches, refit) runs on simulated movies with
motion (``CNMF_HELDOUT_SEEDS``), and each component is a positive if it matches a true
neuron at IoU >= 0.3 (the scoring's rule), a negative otherwise; the report adds how
CaImAn's demo thresholds act on those components. The fit also uses such components of
other movies (``CNMF_TRAIN_SEEDS``, in their 8 rotations and reflections): weak cells whose
estimate is speckled, which no drawn shape resembles (``--no-cnmf-train`` leaves them out).
Training is plain numpy (Adam on the cross-entropy); harvesting the CNMF components takes
a few minutes (``--cnmf-cache DIR`` keeps them).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .datasets import GroundTruth, SimulationParams
from .datasets.scene import build_scene
from .evaluation.kernels import shapes
from .evaluation.kernels._shape_features import crop_image
from .evaluation.kernels.classifier import ShapeModel, model_inputs

TRAIN_SEEDS = tuple(range(1, 13))
HELDOUT_SEEDS = tuple(range(101, 107))
SIZE = 24
# (preset, overrides) of the simulated movies; K is lowered if the neurons do not fit
MOVIES = (("small", dict(K=26)), ("small", dict(K=40, radius_range=(2.5, 4.0))),
          ("small", dict(K=12, radius_range=(6.0, 9.0))), ("hard", dict(K=30)))
SPLIT_KINDS = ("split_cell", "merged_cells", "noisy_cell")


@dataclass
class Dataset:
    x: np.ndarray  # (n, D) classifier inputs
    y: np.ndarray  # (n,) 1 = neuron
    kind: np.ndarray  # (n,) str: "neuron" or the negative's kind


def _truths(seeds: tuple[int, ...]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(dense footprints (K, H, W), radii, partner) of each simulated movie."""
    for seed in seeds:
        for preset, kw in MOVIES:
            K = kw["K"]
            while True:
                try:
                    p = SimulationParams.preset(preset, **{**kw, "K": K}, H=96, W=96, T=20,
                                                seed=seed)
                    truth = build_scene(p).truth
                    break
                except ValueError:  # no room for K neurons
                    K -= 4
            yield truth.footprints, truth.radii, truth.partner


def _crop(rng: np.random.Generator, img: np.ndarray, gSig: float) -> np.ndarray:
    idx = np.flatnonzero(img > 0)
    crop = crop_image(idx, img.ravel()[idx], img.shape, gSig=gSig, size=SIZE)
    return np.rot90(crop, int(rng.integers(4)))[:, :: rng.choice([-1, 1])]


def _center(rng: np.random.Generator, side: int, gSig: float) -> tuple[float, float]:
    """Anywhere in the field of view, or (a third of the time) across one of its edges,
    where CNMF's false positives gather."""
    c = rng.uniform(3 * gSig, side - 1 - 3 * gSig, 2)
    if rng.random() < 1 / 3:
        axis, far = rng.integers(2), rng.random() < 0.5
        depth = rng.uniform(-0.3, 1.2) * gSig
        c[axis] = side - 1 - depth if far else depth
    return float(c[0]), float(c[1])


def _collect(rng: np.random.Generator, seeds: tuple[int, ...], n_neg: int) -> Dataset:
    crops, labels, kinds = [], [], []

    def add(img: np.ndarray, gSig: float, label: int, kind: str) -> None:
        if img.max() > 0:
            crops.append(_crop(rng, img, gSig))
            labels.append(label)
            kinds.append(kind)

    pool = []  # (footprint, gSig) for the negatives made from cells
    for fps, radii, partner in _truths(seeds):
        for k, fp in enumerate(fps):
            gSig = radii[k] / rng.uniform(0.7, 1.4)
            other = fps[partner[k]] if partner[k] >= 0 else None
            for _ in range(2):
                add(shapes.positive_variant(rng, fp, other), gSig, 1, "neuron")
            pool.append((fp, gSig))
    for i in range(n_neg):
        fp, gSig = pool[int(rng.integers(len(pool)))]
        kind = SPLIT_KINDS[i % 3]
        if kind == "split_cell":
            img = shapes.split_cell(rng, fp)
        elif kind == "merged_cells":
            img = shapes.merged_cells(rng, fp, pool[int(rng.integers(len(pool)))][0])
        else:
            img = shapes.noisy_cell(rng, fp, gSig)
        add(img, gSig, 0, kind)
    for name, make in shapes.NEGATIVE_KINDS.items():
        for _ in range(n_neg // 3):
            gSig = rng.uniform(2.5, 8.0)
            side = int(max(48, 10 * gSig))
            add(make(rng, (side, side), gSig, _center(rng, side, gSig)), gSig, 0, name)
    x = model_inputs(np.asarray(crops, np.float32))
    return Dataset(x=x, y=np.asarray(labels, np.float32), kind=np.asarray(kinds))


def _adam_fit(x: np.ndarray, y: np.ndarray, *, hidden: int, epochs: int, lr: float,
              l2: float, rng: np.random.Generator, batch: int = 128) -> ShapeModel:
    """Minimise class-balanced cross-entropy + L2 with Adam (Kingma & Ba 2015,
    arXiv:1412.6980)."""
    mean, std = x.mean(0), x.std(0) + 1e-3
    z = ((x - mean) / std).astype(np.float32)
    n, D = z.shape
    params = [rng.normal(0, np.sqrt(2 / D), (D, hidden)).astype(np.float32),
              np.zeros(hidden, np.float32),
              rng.normal(0, np.sqrt(1 / hidden), hidden).astype(np.float32),
              np.zeros(1, np.float32)]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    w_pos = 0.5 / max(y.mean(), 1e-3)
    w_neg = 0.5 / max(1 - y.mean(), 1e-3)
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        rate = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))  # cosine decay
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            zb, yb = z[idx], y[idx]
            W1, b1, W2, b2 = params
            pre = zb @ W1 + b1
            h = np.maximum(pre, 0)
            with np.errstate(over="ignore"):  # exp overflows to inf: p is then 0, as it should be
                p = 1 / (1 + np.exp(-(h @ W2 + b2[0])))
            g = (p - yb) * np.where(yb > 0, w_pos, w_neg) / len(idx)  # dLoss/dlogit
            gh = np.outer(g, W2) * (pre > 0)
            grads = [zb.T @ gh + l2 * W1, gh.sum(0), h.T @ g + l2 * W2, np.array([g.sum()])]
            step += 1
            for i, gr in enumerate(grads):
                m1[i] = 0.9 * m1[i] + 0.1 * gr
                m2[i] = 0.999 * m2[i] + 0.001 * gr * gr
                mh, vh = m1[i] / (1 - 0.9**step), m2[i] / (1 - 0.999**step)
                params[i] = (params[i] - rate * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
    W1, b1, W2, b2 = params
    return ShapeModel(W1=W1, b1=b1, W2=W2, b2=b2, x_mean=mean.astype(np.float32),
                      x_std=std.astype(np.float32), size=SIZE)


def report(model: ShapeModel, data: Dataset) -> dict[str, float]:
    """Accuracy, precision and recall (neurons are the positives) at 0.5, and the
    fraction of each kind classified correctly."""
    pred = model.predict(data.x) > 0.5
    truth = data.y > 0.5
    tp, fp = np.sum(pred & truth), np.sum(pred & ~truth)
    fn = np.sum(~pred & truth)
    out = {"accuracy": float(np.mean(pred == truth)),
           "precision": float(tp / max(tp + fp, 1)), "recall": float(tp / max(tp + fn, 1))}
    for kind in np.unique(data.kind):
        sel = data.kind == kind
        out[f"correct[{kind}]"] = float(np.mean(pred[sel] == truth[sel]))
    return out


def _concat(*parts: Dataset) -> Dataset:
    return Dataset(x=np.concatenate([d.x for d in parts]), y=np.concatenate([d.y for d in parts]),
                   kind=np.concatenate([d.kind for d in parts]))


def _cnmf_inputs(data: Dataset, *, augment: bool) -> Dataset:
    """Classifier inputs of harvested CNMF crops, with their 8 symmetries if ``augment``."""
    crops = data.x.reshape(len(data.x), SIZE, SIZE)
    reps = 1
    if augment:
        crops, reps = _dihedral(crops), 8
    return Dataset(x=model_inputs(crops), y=np.tile(data.y, reps), kind=np.tile(data.kind, reps))


def threshold_report(model: ShapeModel, data: Dataset, lowest: float | None = None,
                     high: float | None = None) -> dict[str, float]:
    """How the default thresholds (or ``lowest``, ``high``) act on CNMF components: the
    share of true neurons above ``cnn_lowest`` (not vetoed) and above ``min_cnn_thr``
    (accepted on shape alone), and the share of other components vetoed."""
    from .params import Params

    q = Params().quality
    lowest = q.cnn_lowest if lowest is None else lowest
    high = q.min_cnn_thr if high is None else high
    pred = model.predict(data.x)
    pos = data.y > 0.5
    return {"neurons_not_vetoed": float(np.mean(pred[pos] >= lowest)),
            "neurons_accepted_by_shape": float(np.mean(pred[pos] >= high)),
            "others_vetoed": float(np.mean(pred[~pos] < lowest)),
            "others_accepted_by_shape": float(np.mean(pred[~pos] >= high))}


def train(*, seed: int = 0, hidden: int = 32, epochs: int = 40, n_neg: int = 1200,
          cnmf_cache: str | None = None, cnmf_train: bool = True,
          verbose: bool = True) -> tuple[ShapeModel, dict[str, float]]:
    """Build the data sets, fit the model, return it with its held-out scores.

    ``cnmf_cache``: a folder where the harvested CNMF components are kept between runs
    (harvesting runs the pipeline on the ``CNMF_MOVIES``, a few minutes).
    ``cnmf_train``: also fit on the CNMF components of ``CNMF_TRAIN_SEEDS`` (the shipped
    weights do). Without them the model has never seen the speckled estimate of a weak
    cell and vetoes it (``cnn_lowest``). On the held-out CNMF components, with them the
    model vetoes 3.9 % of the true neurons and 88 % of the other components at
    ``cnn_lowest`` = 0.2 (without them: 5.9 % and 86 %).
    """
    t0 = time.process_time()
    rng = np.random.default_rng(seed)
    data = _collect(rng, TRAIN_SEEDS, n_neg)
    if cnmf_train:
        data = _concat(data, _cnmf_inputs(collect_cnmf(CNMF_TRAIN_SEEDS, cache=cnmf_cache, verbose=verbose),
                                         augment=True))
    cnmf_held = _cnmf_inputs(collect_cnmf(CNMF_HELDOUT_SEEDS, cache=cnmf_cache, verbose=verbose),
                             augment=False)
    held = _collect(np.random.default_rng(seed + 10_000), HELDOUT_SEEDS, n_neg // 2)
    t1 = time.process_time()
    model = _adam_fit(data.x, data.y, hidden=hidden, epochs=epochs, lr=2e-3, l2=1e-3,
                      rng=rng)
    t2 = time.process_time()
    scores = {**{f"heldout_{k}": v for k, v in report(model, held).items()},
              **{f"cnmf_heldout_{k}": v for k, v in report(model, cnmf_held).items()},
              **{f"cnmf_heldout_{k}": v for k, v in threshold_report(model, cnmf_held).items()},
              "train_accuracy": report(model, data)["accuracy"],
              "n_train": float(len(data.y)), "n_heldout": float(len(held.y)),
              "n_cnmf_heldout": float(len(cnmf_held.y)),
              "cpu_s_data": t1 - t0, "cpu_s_fit": t2 - t1}
    if verbose:
        for k, v in scores.items():
            print(f"{k:>40s}: {v:.4g}")
    return model, scores


# CNMF's own output on simulated movies, motion-corrected as a user would: (preset,
# overrides, gSig). The components matching a true neuron (IoU >= 0.3, as the scoring
# does) are the positives, the rest (split, merged, background, noise and motion-residue
# components) the negatives.
CNMF_MOVIES = (("small", dict(T=1000), 4.0), ("hard", dict(T=1000), 4.0),
               ("small", dict(T=1000, K=50, radius_range=(3.0, 4.5)), 3.0),
               ("small", dict(T=1000, K=24, radius_range=(5.5, 7.5)), 6.0))
CNMF_TRAIN_SEEDS = tuple(range(501, 506))
CNMF_HELDOUT_SEEDS = (601, 602)


def _pipeline_params(fr: float, gSig: float, max_shift: int):
    """The defaults (CaImAn's demo pipeline) for this movie's frame rate, cells and motion."""
    from .params import Params

    # the corrected movie kept in float32, as when the shipped weights were trained
    return Params.from_caiman({"fr": fr, "gSig": (gSig, gSig), "max_shifts": (max_shift, max_shift),
                               "motion": {"save_movie": "float32"}})


def _cnmf_footprints(preset: str, kw: dict, gSig: float,
                     seed: int) -> tuple[sp.csc_matrix, tuple[int, int], np.ndarray]:
    """The components CNMF finds in one simulated movie: footprints ``(N, K)``, ``(H, W)``
    and labels (1 = matches a true neuron)."""
    import tempfile

    import dask

    from .cnmf import cnmf
    from .datasets import write_movie
    from .io import open_movie
    from .motion import motion_correct
    from .compute import set_quiet
    from .store import ResultsStore
    from .datasets.scoring import frame_offset, match_footprints, shift_images

    p = SimulationParams.preset(preset, **kw, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        movie = open_movie(str(write_movie(f"{tmp}/movie.tif", p, workers=1)))
        truth = GroundTruth.load(f"{tmp}/truth.npz")
        params = _pipeline_params(p.fr, gSig, max(6, int(np.ceil(p.rigid_max + p.nonrigid_max))))
        store = ResultsStore(f"{tmp}/results.zarr")
        set_quiet(True)
        with dask.config.set(scheduler="threads"):  # the pipeline's motion and CNMF stages
            shifts = motion_correct(movie, params, store=store).motion["shifts"].values
            A = sp.csc_matrix(cnmf(store.movie(), params).A)
    found = A.toarray().T.reshape(-1, p.H, p.W)
    true = shift_images(truth.footprints, frame_offset(shifts, truth.shifts))
    y = np.zeros(len(found), np.float32)
    y[match_footprints(true, found)[:, 1]] = 1
    return A, (p.H, p.W), y


def _cached_footprints(cache: str | None, preset: str, kw: dict, gSig: float,
                       seed: int) -> tuple[sp.csc_matrix, tuple[int, int], np.ndarray]:
    """:func:`_cnmf_footprints`, kept in the folder ``cache`` if given. The footprints
    are kept, not their crops, so a cache stays valid when the crops change."""
    name = f"{preset}_{'_'.join(f'{k}{v}' for k, v in sorted(kw.items()))}_g{gSig}_s{seed}.npz"
    path = os.path.join(cache, name.replace(" ", "").replace(",", "-")) if cache else None
    if path and os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            A = sp.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return A, (int(z["dims"][0]), int(z["dims"][1])), z["y"]
    A, dims, y = _cnmf_footprints(preset, kw, gSig, seed)
    if path:
        os.makedirs(cache, exist_ok=True)
        np.savez_compressed(path, data=A.data, indices=A.indices, indptr=A.indptr,
                            shape=np.asarray(A.shape), dims=np.asarray(dims), y=y)
    return A, dims, y


def _cnmf_movie(preset: str, kw: dict, gSig: float, seed: int, cache: str | None = None) -> Dataset:
    """Crops of the components CNMF finds in one simulated movie, labelled by matching."""
    from .evaluation.kernels._shape_features import crop_footprints

    A, dims, y = _cached_footprints(cache, preset, kw, gSig, seed)
    crops = crop_footprints(A, dims, gSig=gSig, size=SIZE)
    kind = np.where(y > 0, "cnmf_neuron", "cnmf_other")
    return Dataset(x=crops.reshape(len(crops), -1), y=y, kind=kind)


def collect_cnmf(seeds: tuple[int, ...], *, cache: str | None = None, verbose: bool = True) -> Dataset:
    """Labelled CNMF components (crops, flattened) of every movie in ``CNMF_MOVIES``
    (harvested once into the folder ``cache`` if given)."""
    parts = []
    for seed in seeds:
        for preset, kw, gSig in CNMF_MOVIES:
            t0 = time.perf_counter()
            parts.append(_cnmf_movie(preset, kw, gSig, seed, cache))
            if verbose:
                d = parts[-1]
                print(f"  cnmf {preset} gSig={gSig} seed {seed}: {len(d.y)} components, "
                      f"{int(d.y.sum())} neurons ({time.perf_counter() - t0:.0f} s)")
    return _concat(*parts)


def _dihedral(crops: np.ndarray) -> np.ndarray:
    """The 8 rotations and reflections of each crop (the labels do not depend on them)."""
    views = [np.rot90(c, k, axes=(1, 2)) for c in (crops, crops[:, :, ::-1]) for k in range(4)]
    return np.concatenate(views)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--cnmf-cache", default=None, metavar="DIR",
                    help="keep the harvested CNMF components here between runs")
    ap.add_argument("--no-cnmf-train", dest="cnmf_train", action="store_false",
                    help="fit on drawn shapes only (see train())")
    args = ap.parse_args(argv)
    model, _ = train(seed=args.seed, hidden=args.hidden, epochs=args.epochs,
                     cnmf_cache=args.cnmf_cache, cnmf_train=args.cnmf_train)
    model.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
