"""``compute.compute``: sums reduced as their parts finish, on a client or without one."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import dask
import pytest

from calcium_dask import compute as engine
from calcium_dask.compute import compute

_ALIVE = {"now": 0, "max": 0}
_LOCK = threading.Lock()


class _Part:
    """A part's result whose lifetime is counted (the cluster runs in this process)."""

    def __init__(self, value: int) -> None:
        self.value = value
        with _LOCK:
            _ALIVE["now"] += 1
            _ALIVE["max"] = max(_ALIVE["max"], _ALIVE["now"])

    def __del__(self) -> None:
        with _LOCK:
            _ALIVE["now"] -= 1


def _make(value: int, after: object) -> _Part:
    time.sleep(0.15)  # long enough for the client to see each part finish
    return _Part(value)


def _token(part: _Part) -> int:
    return part.value


def _add(values: list) -> int:
    return sum(v.value if isinstance(v, _Part) else v for v in values)


def _scrambled_parts(n: int, step: int) -> list:
    """Delayed parts 0..n-1 that can only run in the order 0, step, 2*step... (mod n)."""
    parts: list = [None] * n
    after = None
    for k in range(n):
        i = k * step % n
        parts[i] = dask.delayed(_make, pure=False)(i, after)
        after = dask.delayed(_token, pure=False)(parts[i])
    return parts


@contextmanager
def _two_threads():
    """A client of an in-process cluster of one worker with 2 threads, made current."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client, client.as_current():
        yield client


@pytest.fixture
def waves(monkeypatch) -> list[int]:
    """The roles in flight after each wave a pass submits."""
    seen: list[int] = []
    submit = engine._Flight._submit_wave

    def counted(self):
        submit(self)
        seen.append(len(self.roles))

    monkeypatch.setattr(engine._Flight, "_submit_wave", counted)
    return seen


def test_sums_are_combined_as_their_parts_finish_whatever_the_order():
    """Parts finishing in an order that completes no group of 8 neighbours until the end
    (a fixed tree would hold about 20 of 24 at once) wait at most a few at a time."""
    _ALIVE.update(now=0, max=0)
    with _two_threads() as client:
        obj = dask.delayed(sum)([1, 2, 3])
        out = compute([obj], label="test", sums=[(_scrambled_parts(24, 7), _add)])
    assert out == [6, sum(range(24))]
    assert _ALIVE["max"] <= 4, _ALIVE


@pytest.mark.parametrize("n", [1, 2, 9, 20])
def test_sums_without_a_client_use_a_fixed_tree(monkeypatch, n):
    monkeypatch.setattr(engine, "_client", lambda: None)
    parts = [dask.delayed(lambda i: i * i)(i) for i in range(n)]
    twice = [dask.delayed(lambda i: 2 * i)(i) for i in range(n)]
    out = compute([dask.delayed(len)("abc")], label="test", sums=[(parts, sum), (twice, sum)])
    assert out == [3, sum(i * i for i in range(n)), n * (n - 1)]


def test_sums_on_a_cluster_equal_the_fixed_tree(client):
    parts = [dask.delayed(lambda i: float(i) ** 0.5)(i) for i in range(37)]
    out = compute([], label="test", sums=[(parts, sum)])
    assert out[0] == pytest.approx(sum(i ** 0.5 for i in range(37)), rel=1e-12)


def test_a_failing_part_raises_its_own_error(client):
    def bad(i):
        if i == 5:
            raise ValueError("part 5 is broken")
        return i

    parts = [dask.delayed(bad, pure=False)(i) for i in range(10)]
    with pytest.raises(ValueError, match="part 5 is broken"):
        compute([], label="test", sums=[(parts, sum)])


def test_equal_parts_and_objects_each_count(client):
    """Parts with the same key (the same delayed object twice) are each added."""
    x = dask.delayed(lambda: 3)()
    parts = [x, x, x, dask.delayed(lambda: 4)()]
    assert compute([x, x], label="test", sums=[(parts, sum), ([x], sum)]) == [3, 3, 13, 3]


def test_a_sum_without_parts_is_an_error():
    with pytest.raises(ValueError, match="at least one part"):
        compute([], label="test", sums=[([], sum)])


def test_a_pass_keeps_a_few_objects_per_thread_in_flight(waves):
    """However many objects a pass has, at most ``flight_size`` are on the cluster at once
    (their reads would otherwise pile up on the workers), and every result comes back in
    its place."""
    with _two_threads() as client:
        size = engine.flight_size(client)
        assert size == max(engine.MIN_FLIGHT, 2 * engine.FLIGHT_PER_THREAD)
        objs = [dask.delayed(lambda i: time.sleep(0.005) or i * i, pure=False)(i) for i in range(60)]
        out = compute(objs, label="test", sums=[([dask.delayed(lambda i: i)(i) for i in range(60)], sum)])
    assert out == [i * i for i in range(60)] + [sum(range(60))]
    # each position is an object and a part: twice the roles
    assert len(waves) > 60 // size and max(waves) <= 2 * size, waves


def test_the_flight_grows_as_workers_join(monkeypatch, waves):
    """An adaptive cluster scales with the work it sees: the flight is asked again at each
    wave, so workers that joined get their share."""
    sizes = iter([8, 8, 32])  # the cluster grows after two waves
    monkeypatch.setattr(engine, "flight_size", lambda client: next(sizes, 32))
    with _two_threads() as client:
        objs = [dask.delayed(lambda i: time.sleep(0.005) or i, pure=False)(i) for i in range(100)]
        assert compute(objs, label="test") == list(range(100))
    assert max(waves[:2]) <= 8 and max(waves) > 8, waves
