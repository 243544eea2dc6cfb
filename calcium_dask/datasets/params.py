"""Settings of the simulated two-photon movies (:class:`SimulationParams`)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

PresetName = Literal["small", "medium", "large", "hard", "miniscope"]

# Presets only list what differs from the defaults (which are the "small" movie).
_PRESETS: dict[str, dict[str, Any]] = {
    "small": {},
    "medium": dict(T=2000, H=256, W=256, K=160, nr_grid=(5, 5)),
    "large": dict(T=20000, H=512, W=512, K=640, nr_grid=(7, 7)),
    "hard": dict(
        T=2000,
        H=192,
        W=192,
        K=100,
        pair_frac=0.3,
        min_gap=0.5,
        snr_range=(0.7, 25.0),
        read_sd=6.0,
        neuropil_levels=(22.0, 16.0),
        n_vessels=4,
        rigid_max=10.0,
        drift_amp_range=(3.0, 6.0),
        jitter_sd=0.8,
        breath_amp=0.8,
        event_rate_hz=0.1,
        event_amp_range=(2.0, 6.0),
        nonrigid_max=3.5,
    ),
    # a head-mounted one-photon microscope: somata, vessels and autofluorescence blurred
    # by scattering, under a bright background that fluctuates in space and time
    # (out-of-focus neurons), vignetting of the optics, larger motion, 20 Hz
    "miniscope": dict(
        T=2400,
        H=256,
        W=256,
        K=160,
        fr=20.0,
        dxy=2.0,
        radius_range=(3.5, 5.0),
        blur_px=3.5,
        pair_frac=0.1,
        ring_frac=0.2,
        min_gap=1.0,
        snr_range=(2.0, 20.0),
        dff_median=5.0,
        dff_logsd=0.4,
        baseline_level=20.0,
        neuropil_levels=(6.0, 4.0),
        n_blurred=1200,
        blurred_sigma_range_px=(8.0, 16.0),
        blurred_level=8.0,
        blurred_dff=3.0,
        n_vessels=5,
        vessel_contrast=0.1,
        vignette=0.5,
        offset=200.0,
        read_sd=40.0,
        rigid_max=10.0,
        drift_amp_range=(1.0, 3.0),
        jitter_sd=0.15,
        breath_amp=0.2,
        event_rate_hz=0.08,
        event_amp_range=(2.0, 5.0),
        nonrigid_max=1.5,
        nr_grid=(4, 4),
        nr_timescale_s=3.0,
    ),
}


@dataclass(frozen=True)
class SimulationParams:
    """Settings of a simulated GCaMP two-photon movie.

    Every quantity of light is in photons per pixel per frame; the movie is
    ``offset + gain * Poisson(photons) + Normal(0, read_sd)`` in ADU (uint16).

    Parameters
    ----------
    T, H, W : int
        Frames, rows and columns of the movie.
    K : int
        Number of neurons (all inside the field of view).
    fr : float
        Frame rate, Hz.
    dxy : float
        Pixel size in micrometres (metadata only).
    seed : int
        Seed of every random draw; each concept (layout, activity, background,
        motion, per-frame noise) has its own stream, so changing e.g. the motion
        settings keeps the same neurons.
    radius_range : (float, float)
        Soma radius range, pixels: the rim, where a footprint falls to half its level
        (so a soma of radius 5 spans about 12 pixels at 20 % of its maximum).
    pair_frac : float
        Fraction of neurons that sit in overlapping pairs.
    ring_frac : float
        Fraction of neurons with a dark nucleus (bright ring).
    min_gap : float
        Minimum gap, pixels, between the rims of neurons that are not a pair.
    rate_range_hz : (float, float)
        Spike-rate range (log-uniform), Hz.
    burst_frac : float
        Fraction of neurons that fire in bursts.
    tau_decay_range_s, tau_rise_range_s : (float, float)
        Ranges of the AR(2) decay and rise time constants, seconds.
    spike_amp_logsd : float
        Log-normal spread of the amplitude of single spikes.
    snr_range : (float, float)
        Range of the per-neuron peak SNR (log-uniform); see ``GroundTruth.snr``.
        The spike amplitudes (hence dF/F) are derived from it.
    f0_median, f0_logsd : float
        Log-normal resting fluorescence of a soma at its footprint maximum, photons.
    dff_median, dff_logsd : float
        Log-normal peak dF/F of one spike. Resting fluorescence and dF/F are drawn from
        these, then both scaled by the same factor to reach the neuron's SNR.
    baseline_level : float
        Mean static autofluorescence, photons.
    neuropil_levels : tuple of float
        Mean level of each neuropil background component, photons.
    n_vessels : int
        Number of blood vessels (dark stripes).
    gain, offset, read_sd : float
        ADU per photon, ADU offset and Gaussian read-noise SD (ADU).
    rigid_max : float
        Bound on each component of the rigid shift, pixels (soft, via tanh); 0 for none.
    drift_amp_range : (float, float)
        Range of the slow-drift amplitude per axis, pixels.
    jitter_sd : float
        SD of frame-to-frame jitter, pixels.
    breath_amp : float
        Amplitude of the breathing oscillation, pixels.
    event_rate_hz : float
        Rate of brief motion events (e.g. licking, grooming), Hz.
    event_amp_range : (float, float)
        Amplitude range of those events, pixels.
    nonrigid_max : float
        Bound on the non-rigid displacement at the grid nodes, pixels; 0 for none.
    nr_grid : (int, int)
        Nodes (rows, columns) of the coarse non-rigid grid.
    nr_timescale_s : float
        Time scale (Gaussian SD), seconds, of the nodes' slow random motion.
    nr_mean_free : bool
        True: each node's slow motion averages to exactly zero over the movie, so the
        movie's mean deformation is nil. False: it is a sample of a stationary process
        whose mean over a finite movie is not zero, as in real tissue and in the public
        benchmark's movie; that mean deformation is in every frame, so no correction
        can see it (the motion-free frame is not observable).
    pad : int or None
        Margin, pixels, of the canvas drawn around the field of view so that motion
        never pulls in undefined pixels; ``None`` derives the smallest safe value.
    blur_px : float
        SD, pixels, of the Gaussian blur that light scattered by the tissue adds to
        everything in it (somata, autofluorescence, vessels, neuropil): one-photon
        imaging. Footprints stay max-normalised. 0: none.
    vessel_contrast : float
        Scale of the vessels' depth: at 1 a vessel absorbs 50-85 % of the light at its
        axis (two-photon); lower for one-photon movies, where the light of the tissue
        above and below the vessel fills its shadow.
    vignette : float
        Depth of the optics' vignetting, fixed to the sensor (it does not move with the
        brain): every pixel's light is multiplied by ``1 - vignette * r**2``, ``r`` the
        distance to the centre over half the diagonal (see ``GroundTruth.sensor_gain``).
        0: none.
    n_blurred : int
        Out-of-focus neurons: Gaussian blobs of light (SD drawn from
        ``blurred_sigma_range_px``) that flash with calcium transients of their own, the
        background that fluctuates in space and time in one-photon movies. They are part
        of the background (``bg_spatial``, ``bg_temporal``, after the neuropil), not of
        the neurons to find.
    blurred_sigma_range_px : (float, float)
        Range of their size (Gaussian SD), pixels.
    blurred_level : float
        Median resting light at the centre of an out-of-focus neuron of the smallest size,
        photons (log-normal); wider ones spread the same light (their centre is dimmer by
        the square of the ratio of the sizes).
    blurred_dff : float
        Median dF/F of one spike of an out-of-focus neuron (log-normal).
    """

    T: int = 1000
    H: int = 128
    W: int = 128
    K: int = 40
    fr: float = 30.0
    dxy: float = 1.0
    seed: int = 0
    radius_range: tuple[float, float] = (4.0, 6.0)
    pair_frac: float = 0.15
    ring_frac: float = 0.4
    min_gap: float = 2.0
    rate_range_hz: tuple[float, float] = (0.05, 1.0)
    burst_frac: float = 0.25
    tau_decay_range_s: tuple[float, float] = (0.3, 0.5)
    tau_rise_range_s: tuple[float, float] = (0.02, 0.05)
    spike_amp_logsd: float = 0.3
    snr_range: tuple[float, float] = (1.0, 60.0)
    f0_median: float = 25.0
    f0_logsd: float = 0.5
    dff_median: float = 0.6
    dff_logsd: float = 0.5
    baseline_level: float = 30.0
    neuropil_levels: tuple[float, ...] = (14.0, 10.0)
    n_vessels: int = 3
    gain: float = 2.0
    offset: float = 100.0
    read_sd: float = 4.0
    rigid_max: float = 6.0
    drift_amp_range: tuple[float, float] = (1.5, 3.0)
    jitter_sd: float = 0.4
    breath_amp: float = 0.3
    event_rate_hz: float = 0.05
    event_amp_range: tuple[float, float] = (1.5, 4.0)
    nonrigid_max: float = 2.0
    nr_grid: tuple[int, int] = (5, 5)
    nr_timescale_s: float = 1.5
    nr_mean_free: bool = True
    pad: int | None = None
    blur_px: float = 0.0
    vessel_contrast: float = 1.0
    vignette: float = 0.0
    n_blurred: int = 0
    blurred_sigma_range_px: tuple[float, float] = (6.0, 12.0)
    blurred_level: float = 20.0
    blurred_dff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("T", "H", "W", "K"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # from JSON: store tuples so the params stay hashable
                object.__setattr__(self, f.name, tuple(v))
        self._check_ranges()
        self._check_motion()

    def _check_ranges(self) -> None:
        for name in ("radius_range", "rate_range_hz", "tau_decay_range_s",
                     "tau_rise_range_s", "snr_range", "drift_amp_range", "event_amp_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        for name in ("pair_frac", "ring_frac", "burst_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.tau_rise_range_s[1] >= self.tau_decay_range_s[0]:
            raise ValueError("tau_rise_range_s must lie below tau_decay_range_s")
        if self.fr <= 0 or self.gain <= 0 or self.read_sd < 0:
            raise ValueError("fr and gain must be > 0 and read_sd >= 0")
        if self.rigid_max < 0 or self.nonrigid_max < 0:
            raise ValueError("rigid_max and nonrigid_max must be >= 0 (0: no such motion)")
        if self.nr_timescale_s <= 0:
            raise ValueError(f"nr_timescale_s must be > 0, got {self.nr_timescale_s}")
        if min(self.nr_grid) < 2:
            raise ValueError(f"nr_grid needs >= 2 nodes per axis, got {self.nr_grid}")
        if not 0.0 <= self.vignette < 1.0:
            raise ValueError(f"vignette must lie in [0, 1), got {self.vignette}")
        if min(self.blur_px, self.n_blurred, self.blurred_level, self.blurred_dff) < 0:
            raise ValueError("blur_px, n_blurred, blurred_level and blurred_dff must be >= 0")
        if not 0.0 <= self.vessel_contrast <= 1.0:
            raise ValueError(f"vessel_contrast must lie in [0, 1], got {self.vessel_contrast}")
        if not 0 < self.blurred_sigma_range_px[0] <= self.blurred_sigma_range_px[1]:
            raise ValueError(f"blurred_sigma_range_px must be (lo, hi) with 0 < lo <= hi, "
                             f"got {self.blurred_sigma_range_px}")

    def _check_motion(self) -> None:
        need = self.min_pad
        if self.pad is None:
            object.__setattr__(self, "pad", need)
        elif self.pad < need:
            raise ValueError(
                f"pad={self.pad} is too small for rigid_max={self.rigid_max} and "
                f"nonrigid_max={self.nonrigid_max}: motion would pull in undefined pixels. "
                f"Use pad >= {need} or pad=None."
            )

    @property
    def min_pad(self) -> int:
        """Smallest safe margin: the largest displacement, spline overshoot, interpolation."""
        return int(math.ceil(self.rigid_max + 1.5 * self.nonrigid_max)) + 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Movie shape ``(T, H, W)``."""
        return (int(self.T), int(self.H), int(self.W))

    @classmethod
    def preset(cls, name: PresetName, **overrides: Any) -> SimulationParams:
        """Named settings: ``small`` (128x128x1000, K=40, like the public benchmark),
        ``medium`` (256x256x2000, the demo), ``large`` (512x512x20000), ``hard``
        (192x192x2000, K=100: denser, twice the overlap, lower SNR, more noise and
        neuropil, stronger motion) and ``miniscope`` (256x256x2400 at 20 Hz, K=160: a
        one-photon movie with blurred somata under a bright background that fluctuates
        in space and time, vignetting, vessels and larger motion).

        Parameters
        ----------
        name : str
            One of ``small``, ``medium``, ``large``, ``hard``, ``miniscope``.
        **overrides
            Fields to change, e.g. ``seed=3`` or ``T=500``.
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(_PRESETS)}")
        kw = {**_PRESETS[name], **overrides}
        if "pad" not in overrides:
            kw["pad"] = None
        return cls(**kw)

    def replace(self, **changes: Any) -> SimulationParams:
        """A copy with some fields changed (``pad`` is re-derived unless given)."""
        changes.setdefault("pad", None if self.pad == self.min_pad else self.pad)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of the fields."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The fields as a JSON string."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, strict: bool = True) -> SimulationParams:
        """Inverse of :meth:`to_dict`.

        Unknown keys are an error unless ``strict=False`` (e.g. for a movie's
        ``params.json``, which also lists the file name and the conventions).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if not strict:
            d = {k: v for k, v in d.items() if k in names}
        elif unknown:
            raise ValueError(f"unknown simulation parameters {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> SimulationParams:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(s))


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
