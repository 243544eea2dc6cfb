"""Train the shape classifier on simulated footprints and write its weights.

    python -m calcium_dask.evaluate.train_classifier --out calcium_dask/evaluate/shape_classifier.npz

Positives are the true footprints of simulated movies (several presets, soma radii
and seeds), degraded like CNMF estimates; negatives are the false positives of
:mod:`calcium_dask.evaluate.shapes`. Movies with seeds in ``HELDOUT_SEEDS`` and
negatives from a separate random stream are kept for the report of accuracy,
precision and recall. Training is plain numpy (Adam on the cross-entropy), 20-30 s of
CPU on one core. ``--cnmf-check N`` also runs CNMF on N simulated movies and scores the
components it finds (matched to a true neuron or to none).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..datasets import SimulationParams
from ..datasets.scene import build_scene
from . import shapes
from ._shape_features import crop_image
from .classifier import ShapeModel, model_inputs

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


def train(*, seed: int = 0, hidden: int = 32, epochs: int = 40, n_neg: int = 1200,
          verbose: bool = True) -> tuple[ShapeModel, dict[str, float]]:
    """Build the data sets, fit the model, return it with its held-out scores."""
    t0 = time.process_time()
    rng = np.random.default_rng(seed)
    data = _collect(rng, TRAIN_SEEDS, n_neg)
    held = _collect(np.random.default_rng(seed + 10_000), HELDOUT_SEEDS, n_neg // 2)
    t1 = time.process_time()
    model = _adam_fit(data.x, data.y, hidden=hidden, epochs=epochs, lr=2e-3, l2=1e-3,
                      rng=rng)
    t2 = time.process_time()
    scores = {**{f"heldout_{k}": v for k, v in report(model, held).items()},
              "train_accuracy": report(model, data)["accuracy"],
              "n_train": float(len(data.y)), "n_heldout": float(len(held.y)),
              "cpu_s_data": t1 - t0, "cpu_s_fit": t2 - t1}
    if verbose:
        for k, v in scores.items():
            print(f"{k:>32s}: {v:.4g}")
    return model, scores


def cnmf_check(model: ShapeModel, n_movies: int, *, gSig: float = 5.0) -> dict[str, float]:
    """Score the footprints CNMF finds in motion-free simulated movies (seeds 201...):
    the share of components matching a true neuron (cosine > 0.9) that are accepted and
    of components matching none (< 0.5) that are rejected."""
    from ..cnmf.fit import fit_patch  # only this optional check needs CNMF
    from ..datasets import simulate
    from .classifier import classify

    kept = rejected = n_true = n_false = 0
    for seed in range(201, 201 + n_movies):
        p = SimulationParams.preset("small", H=80, W=80, K=16, T=600, seed=seed, rigid_max=0.0,
                                    nonrigid_max=0.0, jitter_sd=0.0, breath_amp=0.0,
                                    event_rate_hz=0.0, drift_amp_range=(0.0, 0.0))
        movie, truth = simulate(p, workers=1)
        res = fit_patch(movie.astype(np.float32), K=30, gSig=gSig, p=1, nb=2)
        est = res.A.toarray()
        true = truth.footprints.reshape(truth.K, -1).T
        cos = (est / np.linalg.norm(est, axis=0)).T @ (true / np.linalg.norm(true, axis=0))
        best = cos.max(axis=1)
        ok = classify(res.A, (p.H, p.W), gSig=gSig, model=model) > 0.5
        kept += int(np.sum(ok & (best > 0.9)))
        n_true += int(np.sum(best > 0.9))
        rejected += int(np.sum(~ok & (best < 0.5)))
        n_false += int(np.sum(best < 0.5))
    return {"cnmf_true_accepted": kept / max(n_true, 1), "cnmf_n_true": float(n_true),
            "cnmf_false_rejected": rejected / max(n_false, 1), "cnmf_n_false": float(n_false)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--cnmf-check", type=int, default=0, metavar="N",
                    help="also run CNMF on N simulated movies and score its components "
                         "(about 2 s of CPU each)")
    args = ap.parse_args(argv)
    model, _ = train(seed=args.seed, hidden=args.hidden, epochs=args.epochs)
    model.save(args.out)
    print(f"wrote {args.out}")
    if args.cnmf_check > 0:
        for k, v in cnmf_check(model, args.cnmf_check).items():
            print(f"{k:>32s}: {v:.4g}")


if __name__ == "__main__":
    main()
