"""Draw everything but the pixels: the scene from which any frame can be rendered.

All of it is small (K x T traces, a few canvases), so it lives in memory for any movie
length; the pixels are made chunk by chunk by :mod:`.render`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .activity import simulate_activity
from .background import blurred_neurons, baseline_image, neuropil_spatial, neuropil_temporal, support_box
from .footprints import add_patch, make_patches, patch_half_width
from .layout import Layout, place_neurons, vessel_attenuation
from .motion import nonrigid_field, rigid_shifts, spline_basis
from .params import SimulationParams
from .truth import GroundTruth

# One independent random stream per concept: changing one setting leaves the others.
_STREAMS = {"vessels": 1, "layout": 2, "shapes": 3, "activity": 4, "brightness": 5,
            "background": 6, "motion": 7, "neuropil": 8, "blurred": 9}
NOISE_STREAM = 100  # per-frame noise uses [seed, NOISE_STREAM, t]
WORLD_STEP = 32


def stream(seed: int, name: str) -> np.random.Generator:
    """Random generator of one concept of the simulation."""
    return np.random.default_rng([int(seed), _STREAMS[name]])


@dataclass(frozen=True)
class Scene:
    """Ground truth plus the padded canvases the renderer draws on.

    Attributes
    ----------
    truth : GroundTruth
    base : ndarray (Hc, Wc) float32
        Baseline on the canvas (FOV grown by ``pad``), photons.
    bg : ndarray (nb, Hc, Wc) float32
        Background spatial components on the canvas: neuropil, then out-of-focus neurons.
    origins : ndarray (K, 2) int64
        Canvas coordinates of each footprint patch.
    bg_boxes : list of (slice, slice)
        Where each background component is not zero on the canvas.
    """

    truth: GroundTruth
    base: np.ndarray
    bg: np.ndarray
    origins: np.ndarray
    bg_boxes: list[tuple[slice, slice]]

    @property
    def params(self) -> SimulationParams:
        return self.truth.params


def build_scene(p: SimulationParams) -> Scene:
    """Draw neurons, activity, background and motion for ``p`` (no pixels yet)."""
    layout, base, bg = _tissue(p)
    return assemble_scene(p, layout, base, bg)


def assemble_scene(p: SimulationParams, layout: Layout, base: np.ndarray, bg: np.ndarray, *,
                   silent: np.ndarray | None = None, half: int | None = None,
                   f0: np.ndarray | None = None) -> Scene:
    """The scene of given tissue: footprints, activity, neuropil dynamics and motion drawn
    from ``p``'s streams.

    Parameters
    ----------
    p : SimulationParams
        ``p.K`` must equal the layout's number of neurons.
    layout : Layout
        Neuron geometry, FOV coordinates.
    base, bg : ndarray
        Baseline (Hc, Wc) and neuropil (nb, Hc, Wc) images on the padded canvas.
    silent : ndarray (K,) of bool, optional
        Neurons that do not fire (they keep their resting fluorescence).
    half : int, optional
        Half-width of the footprint patches (default: from ``p.radius_range``).
    f0 : ndarray (K,), optional
        Resting fluorescence of each neuron (default: drawn with the SNRs).
    """
    patches, origins = make_patches(stream(p.seed, "shapes"), layout,
                                    half or patch_half_width(p.radius_range[1], p.blur_px), blur=p.blur_px)
    act = simulate_activity(
        stream(p.seed, "activity"), K=p.K, T=p.T, fr=p.fr, rate_range_hz=p.rate_range_hz,
        burst_frac=p.burst_frac, tau_rise_range_s=p.tau_rise_range_s,
        tau_decay_range_s=p.tau_decay_range_s, amp_logsd=p.spike_amp_logsd)
    bg_t = neuropil_temporal(stream(p.seed, "neuropil"), len(bg), p.T, p.fr,
                             act.C.mean(axis=0))
    if p.n_blurred:
        more, more_t = _out_of_focus(p)
        bg, bg_t = np.concatenate([bg, more]), np.concatenate([bg_t, more_t])
    shifts, nr = _motion(p)
    pad = int(p.pad)
    fov = (slice(pad, pad + p.H), slice(pad, pad + p.W))
    K, T = p.K, p.T
    truth = GroundTruth(
        params=p, footprint_patches=patches, footprint_origins=origins,
        centers=layout.centers, radii=layout.radii, ring=layout.ring,
        partner=layout.partner, C=np.zeros((K, T), np.float32),
        S=np.zeros((K, T), np.float32), f0=np.zeros(K, np.float32), g=act.g,
        tau_rise=act.tau_rise, tau_decay=act.tau_decay, rates_hz=act.rates_hz,
        bursty=act.bursty, dff_amp=np.zeros(K), snr=np.zeros(K), noise_sd=np.zeros(K),
        baseline=np.ascontiguousarray(base[fov]),
        bg_spatial=np.ascontiguousarray(bg[(slice(None), *fov)]), bg_temporal=bg_t,
        shifts=shifts, nr_field=nr, nr_By=spline_basis(p.H, p.nr_grid[0]),
        nr_Bx=spline_basis(p.W, p.nr_grid[1]), clean_mean=np.zeros((p.H, p.W), np.float32))
    _set_amplitudes(truth, act.C, act.S, stream(p.seed, "brightness"), f0)
    if silent is not None and np.any(silent):
        _silence(truth, np.asarray(silent, bool))
    return Scene(truth=truth, base=base, bg=bg, origins=origins + pad, bg_boxes=[support_box(b) for b in bg])


def _world(p: SimulationParams) -> tuple[tuple[int, int], int]:
    """Shape and margin of the "world" that spatial randomness is drawn on: larger than
    the canvas, its margin only changes in steps of WORLD_STEP, so that changing the motion
    (hence ``pad``) keeps the same tissue, neurons and brightness."""
    margin = WORLD_STEP * int(np.ceil(int(p.pad) / WORLD_STEP))
    return (p.H + 2 * margin, p.W + 2 * margin), margin


def _silence(truth: GroundTruth, silent: np.ndarray) -> None:
    """No calcium for the ``silent`` neurons; their resting light stays in the mean image."""
    p = truth.params
    truth.C[silent] = 0
    truth.S[silent] = 0
    truth.snr[silent] = 0
    photons = _mean_image(truth, truth.f0, truth.C.mean(axis=1, dtype=np.float64))
    truth.clean_mean[:] = p.offset + p.gain * photons


def _tissue(p: SimulationParams) -> tuple[Layout, np.ndarray, np.ndarray]:
    """Vessels, neuron positions, baseline and neuropil images on the padded canvas
    (drawn on the world, see :func:`_world`), blurred by scattering when ``blur_px``."""
    pad = int(p.pad)
    world, margin = _world(p)
    atten, clearance = vessel_attenuation(stream(p.seed, "vessels"), world, p.n_vessels, p.vessel_contrast)
    layout = place_neurons(
        stream(p.seed, "layout"), K=p.K, shape=(p.H, p.W), radius_range=p.radius_range,
        pair_frac=p.pair_frac, ring_frac=p.ring_frac, min_gap=p.min_gap,
        clearance=clearance, pad=margin)
    rng = stream(p.seed, "background")
    crop = (slice(margin - pad, margin + pad + p.H), slice(margin - pad, margin + pad + p.W))
    base = baseline_image(rng, world, p.baseline_level, atten)[crop]
    bg = neuropil_spatial(rng, world, tuple(p.neuropil_levels), atten)[(slice(None), *crop)]
    if p.blur_px:
        base = ndimage.gaussian_filter(base, p.blur_px)
        bg = ndimage.gaussian_filter(bg, (0, p.blur_px, p.blur_px))
    return layout, np.ascontiguousarray(base), np.ascontiguousarray(bg)


def _out_of_focus(p: SimulationParams) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-focus neurons on the canvas, ``(n, Hc, Wc)``, and their light over time,
    ``(n, T)``, 1 at rest: blobs that flash with calcium transients of their own."""
    rng = stream(p.seed, "blurred")
    world, margin = _world(p)
    atten, _ = vessel_attenuation(stream(p.seed, "vessels"), world, p.n_vessels, p.vessel_contrast)
    off = margin - int(p.pad)
    crop = (slice(off, world[0] - off), slice(off, world[1] - off))
    blobs = blurred_neurons(rng, world, p.n_blurred, p.blurred_sigma_range_px, p.blurred_level, atten, crop)
    act = simulate_activity(
        rng, K=p.n_blurred, T=p.T, fr=p.fr, rate_range_hz=p.rate_range_hz, burst_frac=p.burst_frac,
        tau_rise_range_s=p.tau_rise_range_s, tau_decay_range_s=p.tau_decay_range_s,
        amp_logsd=p.spike_amp_logsd)
    dff = p.blurred_dff * np.exp(rng.normal(0.0, 0.4, p.n_blurred))
    return np.ascontiguousarray(blobs), (1.0 + dff[:, None] * act.C).astype(np.float32)


def _motion(p: SimulationParams) -> tuple[np.ndarray, np.ndarray]:
    """Rigid shifts (T, 2) and non-rigid node field (T, 2, gy, gx)."""
    rng = stream(p.seed, "motion")
    shifts, breath = rigid_shifts(
        rng, T=p.T, fr=p.fr, rigid_max=p.rigid_max, drift_amp_range=p.drift_amp_range,
        jitter_sd=p.jitter_sd, breath_amp=p.breath_amp, event_rate_hz=p.event_rate_hz,
        event_amp_range=p.event_amp_range)
    nr = nonrigid_field(rng, T=p.T, fr=p.fr, grid=p.nr_grid, nonrigid_max=p.nonrigid_max,
                        breath=breath, shape=(p.H, p.W), timescale_s=p.nr_timescale_s,
                        mean_free=p.nr_mean_free)
    return shifts, nr


def _set_amplitudes(truth: GroundTruth, C_unit: np.ndarray, S_unit: np.ndarray,
                    rng: np.random.Generator, f0_given: np.ndarray | None = None) -> None:
    """Draw brightness and target SNRs, scale the calcium to match, fill the means.

    Each neuron's SNR is drawn log-uniformly from ``snr_range``. Its resting
    fluorescence ``f0`` and per-spike dF/F are drawn log-normally and then scaled by a
    common factor until ``gain * max C / noise_sd`` equals the target (the noise grows
    with ``f0``, hence the fixed-point iteration). Under vignetting, signal and noise are
    those the sensor sees at the neuron's place (both scaled by its gain there). With
    ``f0_given`` the resting fluorescence is that, and only the transients are scaled to
    the target.
    """
    p = truth.params
    K = truth.K
    f0 = np.exp(rng.normal(np.log(p.f0_median), p.f0_logsd, K))
    dff = np.exp(rng.normal(np.log(p.dff_median), p.dff_logsd, K))
    target = np.exp(rng.uniform(np.log(p.snr_range[0]), np.log(p.snr_range[1]), K))
    peaks = [_peak_pixel(truth, k) for k in range(K)]
    rest = _mean_image(truth, np.zeros(K), np.zeros(K))  # baseline + neuropil only
    other = np.array([rest[y, x] for y, x in peaks])
    overlap = _overlap_at(truth, peaks)  # footprint j at neuron k's peak pixel
    c_max = C_unit.max(axis=1)
    # the sensor's vignetting scales light, signal and shot noise alike, at each neuron's place
    v = np.array([truth.sensor_gain[y, x] for y, x in peaks], np.float64) if p.vignette else 1.0

    def noise(f0: np.ndarray) -> np.ndarray:
        return np.sqrt(p.gain**2 * (v * (other + overlap @ f0)) + p.read_sd**2)

    if f0_given is not None:
        f0 = np.asarray(f0_given, np.float64)
    for _ in range(50 if f0_given is None else 0):
        scale = np.sqrt(target * noise(f0) / (p.gain * v * c_max) / (f0 * dff))
        f0, dff = f0 * scale, dff * scale
    alpha = target * noise(f0) / (p.gain * v * c_max)  # photons of a median spike's peak
    truth.f0[:] = f0
    truth.C[:] = alpha[:, None] * C_unit
    truth.S[:] = alpha[:, None] * S_unit
    truth.noise_sd[:] = noise(truth.f0.astype(np.float64))
    truth.snr[:] = p.gain * v * truth.C.max(axis=1).astype(np.float64) / truth.noise_sd
    truth.dff_amp[:] = alpha / truth.f0
    photons = _mean_image(truth, truth.f0, truth.C.mean(axis=1, dtype=np.float64))
    if p.vignette:
        photons *= truth.sensor_gain
    truth.clean_mean[:] = p.offset + p.gain * photons


def _overlap_at(truth: GroundTruth, peaks: list[tuple[int, int]]) -> np.ndarray:
    """``M[k, j]``: value of footprint ``j`` at the peak pixel of neuron ``k``."""
    K = truth.K
    P = truth.footprint_patches.shape[1]
    py, px = np.array(peaks).T
    M = np.zeros((K, K))
    for j in range(K):
        iy, ix = py - truth.footprint_origins[j, 0], px - truth.footprint_origins[j, 1]
        ok = (iy >= 0) & (iy < P) & (ix >= 0) & (ix < P)
        M[ok, j] = truth.footprint_patches[j][iy[ok], ix[ok]]
    return M


def _mean_image(truth: GroundTruth, f0: np.ndarray, c_mean: np.ndarray) -> np.ndarray:
    """Temporal mean of the clean movie, photons, given each neuron's f0 and mean C."""
    img = truth.baseline.astype(np.float64)
    for j in range(len(truth.bg_spatial)):
        img += truth.bg_spatial[j] * float(truth.bg_temporal[j].mean(dtype=np.float64))
    for k in range(truth.K):
        add_patch(img, truth.footprint_patches[k].astype(np.float64),
                  truth.footprint_origins[k], float(f0[k]) + float(c_mean[k]))
    return img


def _peak_pixel(truth: GroundTruth, k: int) -> tuple[int, int]:
    """FOV pixel of a footprint's maximum (clamped into the FOV)."""
    patch = truth.footprint_patches[k]
    i, j = np.unravel_index(int(np.argmax(patch)), patch.shape)
    H, W = truth.shape
    y = int(np.clip(truth.footprint_origins[k][0] + i, 0, H - 1))
    x = int(np.clip(truth.footprint_origins[k][1] + j, 0, W - 1))
    return y, x
