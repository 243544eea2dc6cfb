"""CaImAn's parameters that calcium-dask's registry does not hold, and what loading each means.

:meth:`calcium_dask.Params.from_caiman` takes a CaImAn parameter dict unchanged. Its keys
that name a parameter of the registry (:mod:`calcium_dask.params`) set it; every other
CaImAn key is in :data:`CAIMAN_KEYS`, in one of three kinds:

- ``"ignored"``: it cannot change the results of a run here: how CaImAn spreads work over
  its processes or lays out memory, records such as its version, the settings of a method
  that calcium-dask does not offer and refuses when it is chosen (sparse-NMF
  initialisation, 'ellipse' search areas, cvxpy solvers), and CaImAn's online mode
  (OnACID) and its ring-CNN background, which its batch pipeline, the one reproduced here,
  does not use either. Accepted quietly.
- ``"unsupported"``: it changes CaImAn's results and calcium-dask does not implement it.
  Ignored, and named in the one warning line that loading the dict gives, unless its value
  is one of ``same``, which ask for what calcium-dask does anyway.
- ``"fixed"``: calcium-dask does only what ``same`` asks (``method_deconvolution='oasis'``,
  ``method_exp='dilate'``, ``is3D=False``); any other value is refused.

``calcium-dask params --caiman`` lists them. The names and default values are CaImAn's
(``caiman/source_extraction/cnmf/params.py``, ``CNMFParams``); this module holds no code of
CaImAn's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import ParamsError

__all__ = ["CaimanKey", "CaimanRead", "CAIMAN_KEYS", "CAIMAN_GROUPS", "WHOLE_GROUPS", "lookup", "read_caiman",
           "same_value"]

Kind = Literal["ignored", "unsupported", "fixed"]


@dataclass(frozen=True)
class CaimanKey:
    """How calcium-dask treats one CaImAn parameter that its registry does not hold.

    Attributes
    ----------
    group : str
        CaImAn's group of the key (``CNMFParams.<group>``).
    kind : {"ignored", "unsupported", "fixed"}
        See the module's documentation.
    why : str
        What the key does in CaImAn and what calcium-dask does instead.
    same : tuple
        Values that ask for what calcium-dask does: an ``"unsupported"`` key with one of
        them is accepted quietly; a ``"fixed"`` key must have one of them.
    """

    group: str
    kind: Kind
    why: str
    same: tuple = ()


#: CaImAn's names of its groups (``CNMFParams.to_dict()`` and attributes) -> this package's
CAIMAN_GROUPS = {
    "data": "data", "patch": "patch", "patch_params": "patch", "preprocess": "preprocess",
    "preprocess_params": "preprocess", "init": "init", "init_params": "init", "spatial": "spatial",
    "spatial_params": "spatial", "temporal": "temporal", "temporal_params": "temporal",
    "merging": "merging", "quality": "quality", "motion": "motion", "online": "online",
    "ring_CNN": "ring_CNN",
}

_ONLINE = ("OnACID, CaImAn's online CNMF: not offered (calcium-dask runs CaImAn's batch pipeline, "
           "which does not read these either)")
_RING_CNN = "the ring-CNN background model of CaImAn's online one-photon mode: not offered"
#: groups whose every key is ignored, with why
WHOLE_GROUPS = {"online": _ONLINE, "ring_CNN": _RING_CNN}

_ONLINE_KEYS = (
    "N_samples_exceptionality batch_update_suff_stat dist_shape_update ds_factor epochs expected_comps "
    "full_XXt init_batch init_method iters_shape max_comp_update_shape max_num_added max_shifts_online "
    "min_num_trial minibatch_shape minibatch_suff_stat motion_correct movie_name_online normalize n_refit "
    "num_times_comp_updated opencv_codec save_online_movie show_movie simultaneously sniper_mode "
    "stop_detection test_both thresh_CNN_noisy thresh_fitness_delta thresh_fitness_raw thresh_overlap "
    "update_freq update_num_comps use_corr_img use_dense use_peak_max W_update_factor ring_CNN").split()
_RING_CNN_KEYS = ("n_channels use_bias use_add pct patience max_epochs width loss_fn lr lr_scheduler "
                  "path_to_model remove_activity reuse_model").split()

_PROCESSES = "how CaImAn spreads work over its processes: here the Dask cluster and the movie's chunks do"
_GNMF = "CaImAn's graph-NMF initialisation (method_init='graph_nmf'): not offered"
_SNMF = "CaImAn's sparse-NMF initialisation (method_init='sparse_nmf'): not offered"
_SPLITS = ("how CaImAn cuts the movie in time for its processes: here the movie's time chunks "
           "(compute.chunk_frames) do")
_DIAMOND = np.array([[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]])
_SQUARE = np.ones((3, 3), np.uint8)


def _keys(group: str, kind: Kind, why: str, names: str | list[str], same: tuple = ()) -> dict[str, CaimanKey]:
    return {n: CaimanKey(group, kind, why, same) for n in (names.split() if isinstance(names, str) else names)}


#: CaImAn key -> how calcium-dask treats it (keys of the registry are not here)
CAIMAN_KEYS: dict[str, CaimanKey] = {
    **_keys("data", "ignored", "CaImAn's input files: here the movie is given to open_movie or run", "fnames"),
    **_keys("data", "ignored", "the movie's dimensions: read from the movie", "dims"),
    **_keys("data", "ignored", "a record of the CaImAn that wrote the dict", "caiman_version last_commit"),
    **_keys("data", "ignored", "CaImAn's memory-mapped movies: the corrected movie lives in the results store",
            "mmap_F mmap_C"),
    **_keys("patch", "ignored", _PROCESSES, "n_processes in_memory"),
    **_keys("patch", "ignored", "not read by CaImAn's current batch pipeline (the patches downsample by "
            "init.ssub and init.tsub)", "p_ssub p_tsub"),
    **_keys("patch", "unsupported", "CaImAn's removal of very bad components inside each patch",
            "remove_very_bad_comps", same=(False,)),
    **_keys("patch", "unsupported", "skipping the refinement of the components", "skip_refinement",
            same=(False,)),
    **_keys("preprocess", "ignored", _PROCESSES, "n_pixels_per_process"),
    **_keys("preprocess", "unsupported", "one AR model estimated for the whole movie", "compute_g",
            same=(False,)),
    **_keys("preprocess", "unsupported", "the noise level used in the AR estimate", "include_noise",
            same=(False,)),
    **_keys("preprocess", "unsupported", "pixels left out of the noise estimate (saturated)", "pixels",
            same=(None,)),
    **_keys("preprocess", "unsupported", "a given noise level per pixel (here always estimated)", "sn",
            same=(None,)),
    **_keys("init", "ignored", _GNMF, "SC_kernel SC_sigma SC_thr SC_normalize SC_use_NN SC_nnn lambda_gnmf"),
    **_keys("init", "ignored", _SNMF, "alpha_snmf max_iter_snmf sigma_smooth_snmf perc_baseline_snmf"),
    **_keys("init", "ignored", "CaImAn's local-NMF initialisation: not offered", "options_local_NMF"),
    **_keys("init", "ignored", "seeding from a structural channel (CaImAn's seeded CNMF): not offered",
            "seed_method"),
    **_keys("init", "unsupported", "a user template of a neuron for greedy_roi (here a Gaussian of gSig)",
            "kernel", same=(None,)),
    **_keys("spatial", "ignored", _PROCESSES, "block_size_spat num_blocks_per_run_spat n_pixels_per_process"),
    **_keys("spatial", "ignored", "the 'ellipse' search areas (method_exp): not offered", "dist"),
    **_keys("spatial", "fixed", "how search areas grow: only CaImAn's 'dilate' (the support dilated by "
            "cnmf.refit.SEARCH_RADIUS) is offered", "method_exp", same=("dilate",)),
    **_keys("spatial", "unsupported", "the structuring element of the 'dilate' search area (here CaImAn's "
            "default, a diamond of radius 2)", "expandCore", same=(_DIAMOND,)),
    **_keys("spatial", "unsupported", "the median filter of thresholding (here 3 x 3, CaImAn's default)",
            "medw", same=(None, (3, 3), [3, 3])),
    **_keys("spatial", "unsupported", "the closing and connectivity elements of thresholding (here 3 x 3, "
            "CaImAn's default)", "se ss", same=(_SQUARE,)),
    **_keys("spatial", "unsupported", "CaImAn's spatial update solves a LASSO per pixel ('lasso_lars') or an "
            "L0-penalised NNLS; here HALS on the search areas, L1-penalised by the pixel noise", "method_ls"),
    **_keys("spatial", "unsupported", "CaImAn's scaling of traces and footprints in the spatial update",
            "normalize_yyt_one"),
    **_keys("temporal", "ignored", _PROCESSES, "block_size_temp num_blocks_per_run_temp memory_efficient"),
    **_keys("temporal", "ignored", "logging", "verbosity"),
    **_keys("temporal", "ignored", "cvxpy's solvers (method_deconvolution='cvxpy'): not offered", "solvers"),
    **_keys("temporal", "fixed", "deconvolution: only OASIS is offered", "method_deconvolution",
            same=("oasis",)),
    **_keys("merging", "ignored", _PROCESSES, "merge_parallel"),
    **_keys("quality", "unsupported", "several gSig for the CNN classifier (here one: init.gSig)", "gSig_range",
            same=(None,)),
    **_keys("quality", "unsupported", "rejection by eccentricity", "use_ecc", same=(False,)),
    **_keys("quality", "ignored", "the eccentricity bound of use_ecc", "max_ecc"),
    **_keys("motion", "fixed", "volumetric (3-D) correction: not offered; calcium-dask corrects one plane at "
            "a time (open_movie(..., plane=...))", "is3D", same=(False,)),
    **_keys("motion", "unsupported", "correcting a part of the field of view only (here the whole field)",
            "indices", same=((slice(None), slice(None)),)),
    **_keys("motion", "ignored", _SPLITS,
            "num_frames_split splits_els splits_rig num_splits_to_process_els num_splits_to_process_rig"),
    **_keys("motion", "ignored", "CaImAn's GPU path", "use_cuda"),
    **_keys("motion", "unsupported", "CaImAn resizes the grid of patch shifts to the frame corner to corner "
            "(False); calcium-dask interpolates them from the patch centres, as shifts_interpolate=True does",
            "shifts_interpolate", same=(True,)),
    **_keys("online", "ignored", _ONLINE, _ONLINE_KEYS),
    **_keys("ring_CNN", "ignored", _RING_CNN, _RING_CNN_KEYS),
}


def lookup(group: str | None, key: str) -> CaimanKey | None:
    """The entry of a CaImAn key (``group``: CaImAn's group it came in, when it came in one)."""
    entry = CAIMAN_KEYS.get(key)
    if group in WHOLE_GROUPS and (entry is None or entry.group != group):
        return CaimanKey(group, "ignored", WHOLE_GROUPS[group])
    return entry


def same_value(a: Any, b: Any) -> bool:
    """Equality of parameter values across lists, tuples, numpy arrays and scalars."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    a, b = (v.item() if isinstance(v, np.generic) else v for v in (a, b))
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def asks_for_same(entry: CaimanKey, value: Any) -> bool:
    """Whether ``value`` asks for what calcium-dask does (one of ``entry.same``)."""
    return any(same_value(value, s) for s in entry.same)


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}" if value.size > 4 else repr(value.tolist())
    return repr(value.item() if isinstance(value, np.generic) else value)


@dataclass
class CaimanRead:
    """A CaImAn dict sorted out for the registry.

    Attributes
    ----------
    values : dict
        Registry group -> parameter -> value the dict gives it.
    unsupported : list of str
        ``key=value`` of the keys that change CaImAn's results and that calcium-dask ignores.
    conflicts : list of str
        Values a key of the registry got in another of CaImAn's groups than the one used
        (CaImAn keeps e.g. ``p`` in ``preprocess`` and ``temporal``).
    """

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def warning(self) -> str | None:
        """The one line naming what loading the dict ignores (None: nothing)."""
        parts = []
        if self.unsupported:
            parts.append("calcium-dask does not implement these CaImAn parameters, which change CaImAn's "
                         f"results, and ignores them: {', '.join(self.unsupported)}")
        if self.conflicts:
            parts.append(f"{'and' if parts else 'calcium-dask'} ignores these values of keys set twice: "
                         f"{', '.join(self.conflicts)}")
        return "; ".join(parts) + " (calcium-dask params --caiman tells why)" if parts else None


def read_caiman(d: dict[str, Any], registry: dict[str, list[str]], groups: Collection[str],
                unknown: Callable[[str], Exception]) -> CaimanRead:
    """Sort a CaImAn parameter dict, flat or nested by group (CaImAn's group names or
    ``to_dict()``'s, or the registry's ``groups``), for a registry of ``name -> [groups]``.

    A key of the registry goes to its group; given in several of CaImAn's groups, the
    value given in that group (or flat) wins and the others that differ are reported.
    ``unknown(key)`` makes the error for a key neither the registry nor CaImAn knows.

    Raises
    ------
    ParamsError
        A ``"fixed"`` key with a value calcium-dask does not offer, or an unknown key.
    """
    chosen: dict[tuple[str, str], list[tuple[str, Any, bool]]] = {}
    out = CaimanRead()
    for key, value in d.items():
        group = CAIMAN_GROUPS.get(key, key if key in groups else None)
        if isinstance(value, dict) and group is not None:
            for k, v in value.items():
                _sort(out, chosen, group, k, v, f"{key}.{k}", registry, unknown)
        elif "." in key:
            g, _, k = key.partition(".")
            _sort(out, chosen, CAIMAN_GROUPS.get(g, g), k, value, key, registry, unknown)
        else:
            _sort(out, chosen, None, key, value, key, registry, unknown)
    for (g, k), cands in chosen.items():
        label, value, _ = next((c for c in reversed(cands) if c[2]), cands[-1])
        out.values.setdefault(g, {})[k] = value
        out.conflicts += [f"{lab}={_short(v)} ({g}.{k}={_short(value)} is used)"
                          for lab, v, _ in cands if not same_value(v, value)]
    return out


def _sort(out: CaimanRead, chosen: dict, group: str | None, key: str, value: Any, label: str,
          registry: dict[str, list[str]], unknown: Callable[[str], Exception]) -> None:
    if group not in WHOLE_GROUPS and key in registry:
        homes = registry[key]
        home = group if group in homes else homes[0]
        chosen.setdefault((home, key), []).append((label, value, group is None or group == home))
        return
    entry = lookup(group, key)
    if entry is None:
        raise unknown(label)
    if entry.kind == "fixed" and not asks_for_same(entry, value):
        raise ParamsError(f"parameter '{label}' = {_short(value)} is not supported: {entry.why}")
    if entry.kind == "unsupported" and not asks_for_same(entry, value):
        out.unsupported.append(f"{label}={_short(value)}")
