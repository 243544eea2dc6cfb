"""Consistent identities over all sessions from the pairwise matches.

Pairwise assignments need not agree: A-B and B-C may be matched while A-C is not, or
matched to another unit. Units are grouped by average-linkage agglomerative clustering
under a cannot-link constraint: every unit starts alone; the two groups whose pairs of
units have the least mean cost (a pair the pairwise assignment did not match costs ``unmatched_cost``, by default the
largest cost a match may have) are joined first, provided they hold no two units of one session and the pairwise
assignments matched at least ``min_link`` of their pairs; joining stops when no pair of
groups qualifies. So a unit matched A-B and B-C is one unit in A-C even when A-C was not
matched, and where two candidates from one session compete for a group the one with the
lower mean cost wins (conflicts are resolved by cost, never by order of arrival). A last
pass joins groups that conflict in some sessions when keeping, in each, the unit that agrees
better with the joined group makes the grouping agree better with the pairwise matches
(a fragment of a cell that joined first no longer keeps the cell's own unit out).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .match import PairMatches

__all__ = ["Tracks", "track_units"]

UNMATCHED_COST = 1.0


@dataclass(frozen=True)
class Tracks:
    """Tracked units over ``S`` sessions.

    Attributes
    ----------
    assignments : ndarray (N, S) int64
        Each tracked unit's unit position in each session, -1 where it is not seen.
    confidence : ndarray (N,) float64
        ``1 -`` the mean cost over the pairs of the unit's members, an unmatched pair
        costing 1 here: 1 when every pair was matched at no cost, 0 when none was matched;
        NaN for a unit seen in one session.
    member_confidence : ndarray (N, S) float64
        The same for one member against the others; NaN where absent or alone.
    """

    assignments: np.ndarray
    confidence: np.ndarray
    member_confidence: np.ndarray


class _Groups:
    """Groups of units, their sessions and the summed matched costs between them."""

    def __init__(self, session_of: np.ndarray, unmatched_cost: float) -> None:
        self.unmatched_cost = unmatched_cost
        n = session_of.size
        self.members: list[list[int] | None] = [[g] for g in range(n)]
        self.sessions = [1 << int(s) for s in session_of]
        self.version = [0] * n
        self.links: list[dict[int, list[float]]] = [{} for _ in range(n)]  # neighbour -> [sum, count]

    def add_edge(self, a: int, b: int, cost: float) -> None:
        for x, y in ((a, b), (b, a)):
            rec = self.links[x].setdefault(y, [0.0, 0])
            rec[0] += cost
            rec[1] += 1

    def mean_cost(self, a: int, b: int) -> tuple[float, float]:
        """Mean cost over the pairs of groups a and b, and the fraction that were matched."""
        total, count = self.links[a][b]
        pairs = len(self.members[a]) * len(self.members[b])
        return (total + (pairs - count) * self.unmatched_cost) / pairs, count / pairs

    def merge(self, a: int, b: int) -> int:
        """Join b into a (a the larger); returns the surviving id."""
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        self.members[a].extend(self.members[b])
        self.members[b] = None
        self.sessions[a] |= self.sessions[b]
        del self.links[a][b]
        for d, (total, count) in self.links[b].items():
            if d == a:
                continue
            rec = self.links[a].setdefault(d, [0.0, 0])
            rec[0] += total
            rec[1] += count
            back = self.links[d]
            del back[b]
            back[a] = list(rec)
        self.links[b] = {}
        self.version[a] += 1
        return a


def _cluster(groups: _Groups, min_link: float) -> None:
    heap: list[tuple[float, int, int, int, int]] = []

    def push(a: int, b: int) -> None:
        cost, _ = groups.mean_cost(a, b)
        heapq.heappush(heap, (cost, a, b, groups.version[a], groups.version[b]))

    for a, nbrs in enumerate(groups.links):
        for b in nbrs:
            if a < b:
                push(a, b)
    while heap:
        _, a, b, va, vb = heapq.heappop(heap)
        if groups.members[a] is None or groups.members[b] is None or \
                groups.version[a] != va or groups.version[b] != vb:
            continue  # stale: one of the groups has changed since
        if groups.sessions[a] & groups.sessions[b]:
            continue  # cannot link: two units of one session
        _, matched = groups.mean_cost(a, b)
        if matched < min_link or matched == 0:
            continue
        c = groups.merge(a, b)
        for d in groups.links[c]:
            push(c, d)


class _Refiner:
    """Joins of two groups that conflict in some sessions, each conflict settled by keeping
    the unit that agrees better with the joined group (the other is left on its own).

    Greedy joining can let a wrong unit (a fragment of a cell, a neighbour) into a group
    first and so keep the right one out. A join is kept when it raises the sum over the
    pairs of units in one group of ``thresh - cost`` (matched pairs only) and the two sides
    left keep ``min_link`` of their pairs matched.
    """

    def __init__(self, clusters: list[list[int]], adjacency: list[dict[int, float]], session_of: np.ndarray,
                 thresh: float, min_link: float) -> None:
        self.adj, self.session_of, self.thresh, self.min_link = adjacency, session_of, thresh, min_link
        self.members: list[set[int]] = [set(m) for m in clusters]
        self.label = np.empty(session_of.size, np.int64)
        for g, m in enumerate(self.members):
            self.label[list(m)] = g

    def _gain(self, x: int, others: set[int]) -> float:
        return sum(self.thresh - c for y, c in self.adj[x].items() if y in others)

    def _quality(self, nodes: set[int]) -> float:
        return sum(self._gain(x, nodes) for x in nodes) / 2

    def _candidates(self) -> list[tuple[int, int]]:
        cross: dict[tuple[int, int], float] = {}
        for x, nbrs in enumerate(self.adj):
            for y, c in nbrs.items():
                g, h = int(self.label[x]), int(self.label[y])
                if g < h:
                    cross[(g, h)] = cross.get((g, h), 0.0) + self.thresh - c
        return sorted(cross, key=lambda k: -cross[k])

    def _join(self, g: int, h: int) -> tuple[set[int], set[int], float] | None:
        """The joined group, the units left out, and the change of quality (None: no join)."""
        a, b = self.members[g], self.members[h]
        joined = a | b
        by_session: dict[int, list[int]] = {}
        for x in joined:
            by_session.setdefault(int(self.session_of[x]), []).append(x)
        out: set[int] = set()
        for units in (u for u in by_session.values() if len(u) > 1):
            rest = joined.difference(units)
            keep = max(units, key=lambda x: (self._gain(x, rest), len(a if x in a else b)))
            out.update(x for x in units if x != keep)
        side_a, side_b = a - out, b - out
        if not side_a or not side_b:
            return None
        matched = sum(1 for x in side_a for y in self.adj[x] if y in side_b)
        if matched < max(1, self.min_link * len(side_a) * len(side_b)):
            return None
        new = joined - out
        return new, out, self._quality(new) - self._quality(a) - self._quality(b)

    def run(self, passes: int = 10) -> list[list[int]]:
        for _ in range(passes):
            touched: set[int] = set()
            for g, h in self._candidates():
                if g in touched or h in touched:
                    continue  # changed in this pass: looked at again in the next
                found = self._join(g, h)
                if found is None or found[2] <= 1e-12:
                    continue
                new, out, _ = found
                self.members[g], self.members[h] = new, set()
                self.label[list(new)] = g
                for x in out:
                    self.members.append({x})
                    self.label[x] = len(self.members) - 1
                touched.update((g, h))
            if not touched:
                break
        return [sorted(m) for m in self.members if m]


def track_units(n_units: Sequence[int], matches: dict[tuple[int, int], PairMatches], *,
                min_link: float = 0.5, unmatched_cost: float = 0.7) -> Tracks:
    """Group the units of ``S`` sessions into tracked units (see the module docstring).

    Parameters
    ----------
    n_units : sequence of int
        Units (columns) of each session.
    matches : dict (a, b) -> PairMatches
        Pairwise matches between sessions ``a < b``, ``i`` indexing a's units, ``j`` b's.
    min_link : float
        Fraction of their pairs of units the pairwise assignments must have matched for
        two groups to join.
    unmatched_cost : float
        Cost of a pair of units that their assignment did not match, when ranking the
        joins (use the ``thresh_cost`` of the assignments: a missing match counts as the
        worst acceptable one).

    Returns
    -------
    Tracks
        Tracked units ordered by the number of sessions they are seen in (most first),
        then by their first session and unit.
    """
    n_units = np.asarray(n_units, np.int64)
    S = n_units.size
    offset = np.concatenate([[0], np.cumsum(n_units)])
    session_of = np.repeat(np.arange(S), n_units)
    groups = _Groups(session_of, unmatched_cost)
    adjacency: list[dict[int, float]] = [{} for _ in range(session_of.size)]
    for (a, b), m in matches.items():
        for gi, gj, c in zip((offset[a] + m.i).tolist(), (offset[b] + m.j).tolist(), m.cost.tolist()):
            groups.add_edge(gi, gj, c)
            adjacency[gi][gj] = adjacency[gj][gi] = c
    _cluster(groups, min_link)
    clusters = [sorted(m) for m in groups.members if m is not None]
    clusters = _Refiner(clusters, adjacency, session_of, unmatched_cost, min_link).run()
    return _tracks(clusters, matches, offset, session_of, S)


def _tracks(clusters: list[list[int]], matches: dict[tuple[int, int], PairMatches], offset: np.ndarray,
            session_of: np.ndarray, S: int) -> Tracks:
    clusters.sort(key=lambda m: (-len(m), m[0]))
    n = len(clusters)
    label = np.empty(session_of.size, np.int64)
    assignments = np.full((n, S), -1, np.int64)
    for t, members in enumerate(clusters):
        label[members] = t
        for g in members:
            assignments[t, session_of[g]] = g - offset[session_of[g]]
    # matched costs inside each tracked unit, per member
    member_sum = np.zeros(session_of.size)
    member_count = np.zeros(session_of.size)
    for (a, b), m in matches.items():
        gi, gj = offset[a] + m.i, offset[b] + m.j
        same = label[gi] == label[gj]
        for g in (gi[same], gj[same]):
            np.add.at(member_sum, g, m.cost[same])
            np.add.at(member_count, g, 1)
    size = np.array([len(m) for m in clusters])[label]
    others = size - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        member_conf = 1.0 - (member_sum + (others - member_count) * UNMATCHED_COST) / others
    member_conf[others == 0] = np.nan
    member_confidence = np.full((n, S), np.nan)
    member_confidence[label, session_of] = member_conf
    present = assignments >= 0
    seen = present.sum(1)
    total = np.where(present, np.nan_to_num(member_confidence), 0.0).sum(1)
    confidence = np.where(seen > 1, total / np.maximum(seen, 1), np.nan)
    return Tracks(assignments, confidence, member_confidence)
