"""Consistent identities over sessions from pairwise matches: transitivity and conflicts."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.tracking.kernels import PairMatches, track_units


def _m(pairs):
    """PairMatches from ``[(i, j, cost), ...]``."""
    arr = np.array(pairs, float).reshape(-1, 3)
    return PairMatches(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2])


def _units(tracks):
    return {tuple(int(v) for v in row) for row in tracks.assignments}


def test_matches_a_b_and_b_c_make_one_unit_in_a_c_too():
    # unit 0 of A = unit 1 of B = unit 0 of C; A-C was not matched by its own assignment
    t = track_units([2, 2, 1], {(0, 1): _m([(0, 1, 0.3), (1, 0, 0.2)]), (1, 2): _m([(1, 0, 0.35)])})
    assert _units(t) == {(0, 1, 0), (1, 0, -1)}
    row = list(map(tuple, t.assignments)).index((0, 1, 0))
    # pairs A-B 0.3 and B-C 0.35 matched, A-C not (costs 1): mean cost 1.65 / 3
    assert t.confidence[row] == pytest.approx(1 - 1.65 / 3)
    np.testing.assert_allclose(t.member_confidence[row], [1 - 1.3 / 2, 1 - 0.65 / 2, 1 - 1.35 / 2])


def test_a_conflict_over_sessions_is_resolved_by_cost():
    # A0-B0 and B0-C0 say C0 is that unit; A0-C1 says C1 is. C0 is the better match:
    # B0-C0 joins first (0.1), then A0 joins them at (0.2 + 0.7) / 2 (A0-C0 unmatched costs
    # thresh_cost) rather than C1 at 0.6
    t = track_units([1, 1, 2], {(0, 1): _m([(0, 0, 0.2)]), (1, 2): _m([(0, 0, 0.1)]),
                                (0, 2): _m([(0, 1, 0.6)])})
    assert _units(t) == {(0, 0, 0), (-1, -1, 1)}
    # the other way round, C1 wins
    t = track_units([1, 1, 2], {(0, 1): _m([(0, 0, 0.2)]), (1, 2): _m([(0, 0, 0.65)]),
                                (0, 2): _m([(0, 1, 0.05)])})
    assert _units(t) == {(0, 0, 1), (-1, -1, 0)}


def test_no_tracked_unit_ever_holds_two_units_of_one_session():
    rng = np.random.default_rng(0)
    S, K = 6, 30
    matches = {}
    for a in range(S):
        for b in range(a + 1, S):
            i = rng.permutation(K)[:20]
            j = rng.permutation(K)[:20]
            matches[(a, b)] = PairMatches(i, j, rng.uniform(0, 0.7, 20))
    t = track_units([K] * S, matches, min_link=0.0)
    seen = [set() for _ in range(S)]
    for row in t.assignments:  # every unit appears exactly once
        for s, k in enumerate(row):
            if k >= 0:
                assert k not in seen[s]
                seen[s].add(int(k))
    assert all(len(x) == K for x in seen)


def test_two_groups_joined_by_one_match_stay_apart():
    # {A0, B0} and {C0, D0} are each matched; only B0-C0 links them: 1 of 4 pairs < min_link
    matches = {(0, 1): _m([(0, 0, 0.2)]), (2, 3): _m([(0, 0, 0.2)]), (1, 2): _m([(0, 0, 0.3)])}
    t = track_units([1, 1, 1, 1], matches, min_link=0.5)
    assert len(t.assignments) == 2
    assert len(track_units([1, 1, 1, 1], matches, min_link=0.25).assignments) == 1


@pytest.mark.parametrize("seed", range(4))
def test_a_planted_identity_over_ten_sessions_survives_missing_and_wrong_pairwise_matches(seed):
    rng = np.random.default_rng(seed)
    S, K = 10, 40
    perm = [rng.permutation(K) for _ in range(S)]  # unit k of session s is identity perm[s][k]
    where = [np.argsort(p) for p in perm]
    matches, correct = {}, np.zeros((S, K), int)
    for a in range(S):
        for b in range(a + 1, S):
            ids = rng.permutation(K)[: int(0.9 * K)]  # 10 % of pairwise matches missed
            i, j = where[a][ids], where[b][ids]
            j[:2] = j[[1, 0]]  # and two of them swapped (wrong): 4 units of 40 wrong
            cost = rng.uniform(0.1, 0.5, ids.size)
            cost[:2] = 0.65
            matches[(a, b)] = PairMatches(i, j, cost)
            ok = perm[a][i] == perm[b][j]
            np.add.at(correct[a], i[ok], 1)
            np.add.at(correct[b], j[ok], 1)
    t = track_units([K] * S, matches, min_link=0.5)
    identity = np.array([[perm[s][k] if k >= 0 else -1 for s, k in enumerate(row)] for row in t.assignments])
    for row in identity:  # never two neurons in one tracked unit
        assert len(set(row[row >= 0].tolist())) == 1
    # every unit whose own matches were mostly right (6 of its 9 pairs) is with its identity's
    # majority; units left with 3-5 right may be split off, never merged with another neuron
    for x in range(K):
        rows = np.flatnonzero((identity == x).any(1))
        main = rows[np.argmax((identity[rows] == x).sum(1))]
        for s in range(S):
            if correct[s, where[s][x]] >= 6:
                assert identity[main, s] == x
    assert len(t.assignments) <= K + 3


def test_units_never_matched_are_tracked_alone():
    t = track_units([2, 0, 3], {})
    assert t.assignments.shape == (5, 3) and np.isnan(t.confidence).all()
    assert sorted(map(tuple, t.assignments.tolist())) == sorted(
        [(0, -1, -1), (1, -1, -1), (-1, -1, 0), (-1, -1, 1), (-1, -1, 2)])


def test_a_fragment_that_joined_first_does_not_keep_the_cells_own_unit_out():
    # sessions 0-3; unit 0 of each is the cell X; unit 1 of session 2 is a fragment of it that
    # session 0's assignment preferred (cost 0.1). Greedy joining puts the fragment with X0
    # first; the cell's own unit X2 agrees with X1 and X3, and must end up with them.
    matches = {(0, 1): _m([(0, 0, 0.3)]), (0, 2): _m([(0, 1, 0.1)]), (0, 3): _m([(0, 0, 0.3)]),
               (1, 2): _m([(0, 0, 0.3)]), (1, 3): _m([(0, 0, 0.3)]), (2, 3): _m([(0, 0, 0.3)])}
    t = track_units([1, 1, 2, 1], matches)
    assert _units(t) == {(0, 0, 0, 0), (-1, -1, 1, -1)}
