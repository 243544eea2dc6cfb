"""accept(): any upper threshold, no lower bound."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.evaluation.kernels.select import accept

OPTS = dict(min_SNR=2.5, rval_thr=0.8, min_cnn_thr=0.9, SNR_lowest=0.5, rval_lowest=-1.0,
            cnn_lowest=0.1)

# (snr, r, cnn, accepted with cnn, accepted without cnn)
CASES = [
    (3.0, 0.0, 0.5, True, True),     # SNR alone suffices
    (2.5, 0.0, 0.5, False, False),   # SNR threshold is strict
    (1.0, 0.8, 0.5, True, True),     # r alone suffices (>=)
    (1.0, 0.79, 0.5, False, False),
    (1.0, 0.0, 0.9, True, False),    # classifier alone suffices (>=), only with use_cnn
    (1.0, 0.0, 0.89, False, False),
    (0.5, 0.95, 0.95, False, False),  # SNR at its lowest bound rejects (<=)
    (0.51, 0.95, 0.5, True, True),
    (5.0, -1.0, 0.95, False, False),  # r at its lowest bound rejects
    (5.0, 0.9, 0.1, False, True),    # classifier at its lowest bound rejects, with use_cnn
    (5.0, 0.9, 0.11, True, True),
    (np.nan, 0.9, 0.5, True, True),  # NaN passes nothing and fails nothing
    (np.nan, np.nan, np.nan, False, False),
]


def test_rules_with_and_without_cnn():
    snr, r, cnn, with_cnn, without = (np.array(c, dtype=float) for c in zip(*CASES))
    assert accept(snr, r, cnn, **OPTS, use_cnn=True).tolist() == with_cnn.astype(bool).tolist()
    assert accept(snr, r, cnn, **OPTS, use_cnn=False).tolist() == without.astype(bool).tolist()
    assert accept(snr, r, None, **OPTS, use_cnn=False).tolist() == without.astype(bool).tolist()


def test_thresholds_are_parameters():
    snr, r, cnn = np.array([3.0]), np.array([0.0]), np.array([0.5])
    assert accept(snr, r, cnn, min_SNR=2.0)[0]
    assert not accept(snr, r, cnn, min_SNR=4.0)[0]
    assert not accept(snr, r, cnn, min_SNR=2.0, SNR_lowest=3.0)[0]
    assert not accept(snr, r, cnn, min_SNR=2.0, rval_lowest=0.0)[0]
    assert accept(np.array([1.0]), np.array([0.5]), cnn, rval_thr=0.5)[0]


def test_errors_and_empty():
    assert accept(np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="cnn_pred"):
        accept(np.ones(2), np.ones(2), None)
    with pytest.raises(ValueError, match="r_values"):
        accept(np.ones(2), np.ones(3), np.ones(2))
