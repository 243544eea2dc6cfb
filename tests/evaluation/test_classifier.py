"""Shape classifier: held-out neurons score high, CNMF-like junk scores low."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from calcium_dask.datasets import SimulationParams
from calcium_dask.datasets.scene import build_scene
from calcium_dask.evaluation.kernels import shapes
from calcium_dask.evaluation.kernels.classifier import (ShapeModel, classify, default_model_path,
                                              load_model)
from calcium_dask.train_classifier import HELDOUT_SEEDS, TRAIN_SEEDS

UNSEEN = (301, 302, 303)  # neither training nor the script's held-out seeds


def _sparse(images: list[np.ndarray]) -> sp.csc_matrix:
    return sp.csc_matrix(np.stack([im.ravel() for im in images], axis=1))


@pytest.fixture(scope="module")
def neurons():
    """True footprints of unseen simulated movies, with their radii."""
    out = []
    for seed in UNSEEN:
        truth = build_scene(SimulationParams.preset("small", H=96, W=96, K=24, T=20,
                                                    seed=seed)).truth
        out.append((truth.footprints, truth.radii))
    return out


def test_seeds_are_disjoint():
    assert not set(UNSEEN) & (set(TRAIN_SEEDS) | set(HELDOUT_SEEDS))
    assert not set(TRAIN_SEEDS) & set(HELDOUT_SEEDS)


def test_true_footprints_score_high(neurons):
    scores = []
    for fps, _ in neurons:
        scores.append(classify(_sparse(list(fps)), fps.shape[1:], gSig=5.0))
    scores = np.concatenate(scores)
    assert scores.size >= 60
    assert np.mean(scores > 0.5) > 0.9
    assert np.median(scores) > 0.9


def test_noisy_estimates_of_neurons_score_high(neurons):
    rng = np.random.default_rng(0)
    fps, _ = neurons[0]
    imgs = [shapes.positive_variant(rng, fp) for fp in fps]
    assert np.mean(classify(_sparse(imgs), fps.shape[1:], gSig=5.0) > 0.5) > 0.9


@pytest.mark.parametrize("kind", ["box", "stripe", "sparse_noise", "noise_fill", "blob",
                                  "dendrite"])
def test_junk_scores_low(kind):
    rng = np.random.default_rng(7)
    dims, gSig = (64, 64), 5.0
    imgs = [shapes.NEGATIVE_KINDS[kind](rng, dims, gSig, tuple(rng.uniform(16, 48, 2)))
            for _ in range(40)]
    imgs = [im for im in imgs if im.max() > 0]
    pred = classify(_sparse(imgs), dims, gSig=gSig)
    assert np.mean(pred < 0.5) > 0.9, np.round(pred, 2)


def test_cells_turned_into_junk_score_low(neurons):
    rng = np.random.default_rng(3)
    fps, _ = neurons[1]
    made = [shapes.noisy_cell(rng, fp, 5.0) for fp in fps]
    made += [shapes.merged_cells(rng, fps[i], fps[(i + 1) % len(fps)]) for i in range(len(fps))]
    pred = classify(_sparse(made), fps.shape[1:], gSig=5.0)
    assert np.mean(pred < 0.5) > 0.85


def test_deterministic_and_order_free(neurons):
    fps, _ = neurons[2]
    A = _sparse(list(fps))
    a = classify(A, fps.shape[1:], gSig=5.0)
    b = classify(A, fps.shape[1:], gSig=(5.0, 5.0))
    assert_array_equal(a, b)
    rev = classify(A[:, ::-1], fps.shape[1:], gSig=5.0)
    assert_array_equal(rev[::-1], a)
    assert np.all((a >= 0) & (a <= 1))


def test_empty_inputs():
    A = sp.csc_matrix((100, 2))
    assert_array_equal(classify(A, (10, 10), gSig=3.0), [0.0, 0.0])
    assert classify(sp.csc_matrix((100, 0)), (10, 10), gSig=3.0).shape == (0,)
    with pytest.raises(ValueError, match="pixels"):
        classify(sp.csc_matrix(np.ones((99, 1))), (10, 10), gSig=3.0)
    with pytest.raises(ValueError, match="gSig"):
        classify(sp.csc_matrix(np.ones((100, 1))), (10, 10), gSig=0.0)


def test_weights_file_is_plain_and_small(tmp_path):
    path = default_model_path()
    assert path.stat().st_size < 200_000
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    model = load_model()
    assert isinstance(model, ShapeModel)
    copy = tmp_path / "m.npz"
    model.save(copy)
    again = load_model(copy)
    assert_array_equal(again.W1, model.W1)
    fps = np.zeros((1, 32, 32), np.float32)
    fps[0, 10:20, 12:18] = 1
    A = _sparse(list(fps))
    assert_array_equal(classify(A, (32, 32), gSig=4.0, model=copy),
                       classify(A, (32, 32), gSig=4.0))
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        load_model(tmp_path / "missing.npz")


def test_cnmf_components_are_labelled_by_matching_the_truth():
    """The training script's CNMF examples: the pipeline's own components of a simulated
    movie, positive exactly when they match a true neuron."""
    from calcium_dask import train_classifier as tc

    data = tc._cnmf_movie("small", dict(T=300, H=64, W=64, K=8), 4.0, 901)
    assert data.x.shape == (len(data.y), tc.SIZE * tc.SIZE)
    assert 6 <= data.y.sum() <= 8  # most of the 8 neurons found, none twice
    assert_array_equal(data.kind == "cnmf_neuron", data.y > 0)
    crops = data.x.reshape(-1, tc.SIZE, tc.SIZE)
    assert np.allclose(crops.max(axis=(1, 2)), 1.0)  # each crop scaled to maximum 1
    views = tc._cnmf_inputs(data, augment=True)
    assert len(views.y) == 8 * len(data.y)
    # the shape measures do not depend on the view, only the pixels do
    feats = views.x[:, tc.SIZE * tc.SIZE:].reshape(8, len(data.y), -1)
    assert np.allclose(feats, feats[:1], atol=1e-4)


def test_cnmf_seeds_are_disjoint_from_the_reports():
    from calcium_dask import train_classifier as tc

    assert not set(tc.CNMF_TRAIN_SEEDS) & set(tc.CNMF_HELDOUT_SEEDS)
    assert not (set(tc.CNMF_TRAIN_SEEDS) | set(tc.CNMF_HELDOUT_SEEDS)) & set(UNSEEN)
