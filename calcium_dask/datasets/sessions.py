"""Several sessions (days) of one field of view, with the identities of their neurons.

One piece of tissue (neurons, vessels, autofluorescence, neuropil) is drawn on a "world"
larger than the field of view; each day sees it through its own transform: a rotation
about the field's centre, a shift and a smooth deformation, drawn independently for each
day so that any two days differ by at most ``max_rotation`` degrees, ``max_shift`` and
``max_deformation`` pixels. On each day a fraction of the neurons is silent (they keep
their resting fluorescence, so they show in the mean image), a few neurons only appear
from a later day on, the footprints change shape a little, and activity, brightness,
neuropil dynamics, in-session motion and noise are drawn anew. Each day is an ordinary
simulated movie (:mod:`calcium_dask.datasets`) with its own ``truth.npz``; the identities
map each day's neurons to the world's.

>>> from calcium_dask.datasets import SimulationParams
>>> from calcium_dask.datasets.sessions import SessionsParams, write_sessions
>>> sp = SessionsParams(SimulationParams.preset("small", T=1500), n_sessions=3)
>>> write_sessions("sessions/", sp)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .footprints import patch_half_width
from .layout import ECC_MAX, Layout
from .motion import spline_basis
from .params import SimulationParams
from .scene import Scene, _tissue, assemble_scene
from .truth import GroundTruth
from .write import simulate_scene, write_scene

__all__ = ["SessionsParams", "SessionsTruth", "build_sessions", "simulate_sessions", "write_sessions",
           "SESSIONS_NAME", "day_dir"]

SESSIONS_NAME = "sessions.npz"
_STREAM = 23  # the sessions' own random stream: [seed, _STREAM, day]
_DEFORM_NODES = 4


@dataclass(frozen=True)
class SessionsParams:
    """Settings of a multi-session simulation.

    Parameters
    ----------
    movie : SimulationParams
        Each day's movie (size, frames, in-session motion...); ``K`` neurons lie in the
        field of view (the world around it has the same density).
    n_sessions : int
        Number of days.
    max_shift : float
        Largest shift of the field between two days, pixels.
    max_rotation : float
        Largest rotation between two days, degrees.
    max_deformation : float
        Largest smooth deformation between two days, pixels.
    silent_frac : float
        Fraction of the neurons silent on a given day.
    new_frac : float
        Fraction of the neurons that appear only from a later day on.
    shape_change : float
        Relative day-to-day change of a footprint's radius and ellipticity (SD), and of
        its orientation (radians); textures are drawn anew every day.
    brightness_change : float
        Log-normal SD of the day-to-day change of a neuron's resting fluorescence (its
        transients follow each day's SNR, drawn anew).
    at_bounds : bool
        Days alternate between the two ends of the bounds (rotations of
        ``+-max_rotation / 2``, shifts of ``+-max_shift / 2`` along one direction, every
        deformation of peak ``max_deformation / 2``), so that consecutive days differ by
        exactly ``max_rotation`` and ``max_shift``; otherwise each day is drawn within them.
    """

    movie: SimulationParams = dataclasses.field(default_factory=SimulationParams)
    n_sessions: int = 3
    max_shift: float = 20.0
    max_rotation: float = 3.0
    max_deformation: float = 3.0
    silent_frac: float = 0.15
    new_frac: float = 0.05
    shape_change: float = 0.1
    brightness_change: float = 0.1
    at_bounds: bool = False

    def __post_init__(self) -> None:
        if int(self.n_sessions) < 1:
            raise ValueError(f"n_sessions must be >= 1, got {self.n_sessions}")
        for name in ("max_shift", "max_rotation", "max_deformation", "shape_change", "brightness_change"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("silent_frac", "new_frac"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    @property
    def margin(self) -> int:
        """World margin around the field of view that every day's canvas stays within."""
        p = self.movie
        half_diag = math.hypot(p.H + 2 * p.pad, p.W + 2 * p.pad) / 2
        return int(math.ceil(self.max_shift / 2 + half_diag * math.radians(self.max_rotation / 2)
                             + self.max_deformation / 2 + 3))

    def world(self) -> SimulationParams:
        """The world's settings: the field grown by :attr:`margin`, neurons at the same density."""
        p, m = self.movie, self.margin
        H, W = p.H + 2 * m, p.W + 2 * m
        return p.replace(H=H, W=W, K=int(round(p.K * H * W / (p.H * p.W))), pad=p.pad)

    def day_params(self, day: int, K: int) -> SimulationParams:
        """Day ``day``'s movie settings: its own seed (hence activity, motion, noise), K neurons."""
        return self.movie.replace(K=int(K), seed=1000 * (int(self.movie.seed) + 1) + int(day), pad=self.movie.pad)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "movie"}
        return {"movie": self.movie.to_dict(), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionsParams:
        d = dict(d)
        return cls(movie=SimulationParams.from_dict(d.pop("movie")), **d)


@dataclass
class SessionsTruth:
    """Which neuron of each day is which, and how each day sees the world.

    Day ``d``'s field-of-view pixel ``q`` shows the world's point
    ``w = c_world + R(rotation[d]) (q - c) + shift[d] + deformation[d][:, q + pad]`` (``(y, x)``,
    ``c`` the field's centre, ``c_world = c + margin``, ``pad`` the movie's canvas margin;
    ``R`` as in :class:`calcium_dask.tracking.kernels.Alignment`).

    Attributes
    ----------
    params : SessionsParams
    identities : list of ndarray (K_d,) int64
        World index of each neuron of day d (the order of the day's ``truth.npz``).
    silent : list of ndarray (K_d,) bool
        The day's silent neurons.
    world_centers : ndarray (K_world, 2)
        Soma centres in world coordinates.
    first_day : ndarray (K_world,) int64
        Day from which each world neuron exists.
    rotation : ndarray (S,)
        Degrees.
    shift : ndarray (S, 2)
    deformation : ndarray (S, 2, H + 2 pad, W + 2 pad) float32
        On each day's canvas (the field grown by the movie's ``pad``).
    """

    params: SessionsParams
    identities: list[np.ndarray]
    silent: list[np.ndarray]
    world_centers: np.ndarray
    first_day: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    deformation: np.ndarray

    @property
    def n_sessions(self) -> int:
        return len(self.identities)

    def pairs(self, a: int, b: int) -> np.ndarray:
        """``(i, j)`` rows: neuron i of day a is neuron j of day b."""
        ia, ib = self.identities[a], self.identities[b]
        common, ka, kb = np.intersect1d(ia, ib, return_indices=True)
        return np.stack([ka, kb], 1).astype(np.int64)

    def world_of(self, day: int, q: np.ndarray) -> np.ndarray:
        """World position of points ``q`` (n, 2) of day ``day``'s field (``(y, x)``)."""
        return _world_of(self.params, float(self.rotation[day]), self.shift[day], self.deformation[day],
                         self.params.movie.pad, np.atleast_2d(np.asarray(q, np.float64)))

    def day_of(self, day: int, w: np.ndarray) -> np.ndarray:
        """Day ``day``'s field position of world points ``w`` (n, 2)."""
        return _day_of(self.params, float(self.rotation[day]), self.shift[day], self.deformation[day],
                       self.params.movie.pad, np.atleast_2d(np.asarray(w, np.float64)))

    def save(self, path: str | os.PathLike) -> Path:
        counts = np.array([len(i) for i in self.identities], np.int64)
        np.savez_compressed(
            path, params=np.array(json.dumps(self.params.to_dict())), counts=counts,
            identities=np.concatenate(self.identities) if counts.sum() else np.zeros(0, np.int64),
            silent=np.concatenate(self.silent) if counts.sum() else np.zeros(0, bool),
            world_centers=self.world_centers, first_day=self.first_day, rotation=self.rotation,
            shift=self.shift, deformation=self.deformation)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SessionsTruth:
        with np.load(path, allow_pickle=False) as z:
            bounds = np.cumsum(np.r_[0, z["counts"]])
            split = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
            return cls(params=SessionsParams.from_dict(json.loads(str(z["params"][()]))),
                       identities=[z["identities"][s] for s in split], silent=[z["silent"][s] for s in split],
                       world_centers=z["world_centers"], first_day=z["first_day"], rotation=z["rotation"],
                       shift=z["shift"], deformation=z["deformation"])


@dataclass(frozen=True)
class _DayView:
    rotation: float  # degrees
    shift: np.ndarray  # (2,)
    deformation: np.ndarray  # (2, Hc, Wc) on the day's canvas


def _rotation(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])


def _draw_view(rng: np.random.Generator, sp: SessionsParams, day: int, direction: float) -> _DayView:
    """One day's transform: each within half of the largest day-to-day difference (at
    alternate ends of it with ``at_bounds``; ``direction`` is then the shifts' angle)."""
    p = sp.movie
    Hc, Wc = p.H + 2 * p.pad, p.W + 2 * p.pad
    radius = sp.max_shift / 2 * math.sqrt(rng.uniform())
    phi = rng.uniform(0, 2 * math.pi)
    rotation = rng.uniform(-sp.max_rotation / 2, sp.max_rotation / 2)
    nodes = rng.standard_normal((2, _DEFORM_NODES, _DEFORM_NODES))
    field = np.einsum("yi,cij,xj->cyx", spline_basis(Hc, _DEFORM_NODES), nodes, spline_basis(Wc, _DEFORM_NODES))
    peak = float(np.hypot(field[0], field[1]).max())
    amplitude = rng.uniform(0.6, 1.0)
    if sp.at_bounds:
        sign = 1.0 if day % 2 == 0 else -1.0
        radius, phi, rotation, amplitude = sp.max_shift / 2, direction + (0 if sign > 0 else math.pi), \
            sign * sp.max_rotation / 2, 1.0
    field *= (sp.max_deformation / 2) * amplitude / max(peak, 1e-12)
    return _DayView(rotation, np.array([radius * math.sin(phi), radius * math.cos(phi)]),
                    field.astype(np.float32))


def _world_of_canvas(sp: SessionsParams, view: _DayView) -> np.ndarray:
    """World canvas position (2, Hc, Wc) of each pixel of the day's canvas."""
    p, m = sp.movie, sp.margin
    pad = p.pad
    q = np.mgrid[-pad:p.H + pad, -pad:p.W + pad].astype(np.float64)
    c = (np.array([p.H, p.W], np.float64) - 1) / 2
    w = np.einsum("ij,jhw->ihw", _rotation(view.rotation), q - c[:, None, None])
    return w + (c + m + view.shift + pad)[:, None, None] + view.deformation


def _sample(field: np.ndarray, q: np.ndarray, origin: float) -> np.ndarray:
    """Bilinear values (n, 2) of a (2, h, w) field at points q (n, 2) (field pixel 0 at
    ``q = -origin``), clamped at its edges."""
    qc = np.clip(q + origin, 0, np.array(field.shape[1:]) - 1).astype(np.float32)
    return np.stack([cv2.remap(np.ascontiguousarray(field[k], np.float32), qc[:, 1:2], qc[:, 0:1],
                               cv2.INTER_LINEAR)[:, 0] for k in range(2)], 1).astype(np.float64)


def _world_of(sp: SessionsParams, rotation: float, shift: np.ndarray, field: np.ndarray, origin: float,
              q: np.ndarray) -> np.ndarray:
    """World field-of-view position of day points ``q`` (n, 2)."""
    p = sp.movie
    c = (np.array([p.H, p.W], np.float64) - 1) / 2
    return (q - c) @ _rotation(rotation).T + c + sp.margin + shift + _sample(field, q, origin)


def _day_of(sp: SessionsParams, rotation: float, shift: np.ndarray, field: np.ndarray, origin: float,
            w: np.ndarray) -> np.ndarray:
    """Day field-of-view position of world points ``w`` (n, 2), inverting :func:`_world_of`."""
    p = sp.movie
    c = (np.array([p.H, p.W], np.float64) - 1) / 2
    R = _rotation(rotation)
    q = (np.asarray(w, np.float64) - c - sp.margin - shift) @ R + c
    for _ in range(20):  # fixed point: the deformation is smooth and small
        q = (w - c - sp.margin - shift - _sample(field, q, origin)) @ R + c
    return q


def _resample(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    return cv2.remap(np.ascontiguousarray(image, np.float32), where[1].astype(np.float32),
                     where[0].astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _day_layout(rng: np.random.Generator, sp: SessionsParams, world: Layout, ids: np.ndarray,
                centers: np.ndarray, rotation: float) -> Layout:
    """The day's geometry of the world neurons ``ids``: moved, turned, slightly reshaped."""
    n, ch = len(ids), sp.shape_change
    radii = world.radii[ids] * np.exp(rng.normal(0, ch, n))
    lo, hi = sp.movie.radius_range
    radii = np.clip(radii, 0.8 * lo, 1.2 * hi)
    ecc = np.clip(world.ecc[ids] + rng.normal(0, ch * ECC_MAX, n), -ECC_MAX, ECC_MAX)
    angle = world.angle[ids] + math.radians(rotation) + rng.normal(0, ch, n)
    partner = np.full(n, -1, np.int64)
    where = {int(g): k for k, g in enumerate(ids)}
    for k, g in enumerate(ids):
        partner[k] = where.get(int(world.partner[g]), -1)
    return Layout(centers=centers, radii=radii, ecc=ecc, angle=angle, ring=world.ring[ids], partner=partner)


def build_sessions(sp: SessionsParams) -> tuple[list[Scene], SessionsTruth]:
    """Draw the world and every day's scene (no pixels yet)."""
    wp = sp.world()
    layout, base, bg = _tissue(wp)
    world_f0 = assemble_scene(wp.replace(T=min(wp.T, 1000), pad=wp.pad), layout, base, bg).truth.f0
    rng = np.random.default_rng([int(sp.movie.seed), _STREAM])
    first_day = np.zeros(wp.K, np.int64)
    new = rng.random(wp.K) < sp.new_frac
    if sp.n_sessions > 1:
        first_day[new] = rng.integers(1, sp.n_sessions, int(new.sum()))
    direction = rng.uniform(0, 2 * math.pi)
    p = sp.movie
    half = patch_half_width(1.2 * p.radius_range[1])
    scenes, views, identities, silents = [], [], [], []
    for day in range(sp.n_sessions):
        drng = np.random.default_rng([int(sp.movie.seed), _STREAM, day])
        view = _draw_view(drng, sp, day, direction)
        centers = _day_of(sp, view.rotation, view.shift, view.deformation, p.pad, layout.centers)
        reach = layout.extent  # a neuron with part of its 20 %-of-max mask in the field
        inside = ((centers[:, 0] > -reach) & (centers[:, 0] < p.H - 1 + reach) & (centers[:, 1] > -reach)
                  & (centers[:, 1] < p.W - 1 + reach) & (first_day <= day))
        ids = np.flatnonzero(inside)
        silent = drng.random(ids.size) < sp.silent_frac
        day_layout = _day_layout(drng, sp, layout, ids, centers[ids], view.rotation)
        where = _world_of_canvas(sp, view)
        day_base = _resample(base, where)
        day_bg = np.stack([_resample(b, where) for b in bg]) if len(bg) else bg[:, : day_base.shape[0], : day_base.shape[1]]
        f0 = world_f0[ids] * np.exp(drng.normal(0, sp.brightness_change, ids.size))
        scenes.append(assemble_scene(sp.day_params(day, ids.size), day_layout, day_base, day_bg,
                                     silent=silent, half=half, f0=f0))
        views.append(view)
        identities.append(ids.astype(np.int64))
        silents.append(silent)
    deformation = np.stack([v.deformation for v in views]).astype(np.float32)
    truth = SessionsTruth(params=sp, identities=identities, silent=silents, world_centers=layout.centers,
                          first_day=first_day, rotation=np.array([v.rotation for v in views]),
                          shift=np.stack([v.shift for v in views]), deformation=deformation)
    return scenes, truth


def simulate_sessions(sp: SessionsParams, *, workers: int | None = None
                      ) -> tuple[list[tuple[np.ndarray, GroundTruth]], SessionsTruth]:
    """Every day's movie in memory, with its ground truth, and the sessions' truth."""
    scenes, truth = build_sessions(sp)
    return [simulate_scene(s, workers=workers) for s in scenes], truth


def day_dir(root: str | os.PathLike, day: int) -> Path:
    """Folder of day ``day``'s movie in a :func:`write_sessions` output."""
    return Path(root) / f"day{day}"


def write_sessions(root: str | os.PathLike, sp: SessionsParams, *, format: str = "tiff",
                   chunk_frames: int = 500, workers: int | None = None) -> list[Path]:
    """Write every day's movie to ``root/day<d>/movie.<tif|zarr>`` (with its ``truth.npz``
    and ``params.json``) and the sessions' truth to ``root/sessions.npz``.

    Returns
    -------
    list of Path
        The movies, day by day.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scenes, truth = build_sessions(sp)
    suffix = {"tiff": "tif", "zarr": "zarr"}.get(format)
    if suffix is None:
        raise ValueError(f"format must be 'tiff' or 'zarr', got {format!r}")
    paths = [write_scene(day_dir(root, d) / f"movie.{suffix}", s, format=format, chunk_frames=chunk_frames,
                         workers=workers) for d, s in enumerate(scenes)]
    truth.save(root / SESSIONS_NAME)
    return paths
