"""Results to NWB (pynwb ophys): ImageSegmentation, Fluorescence and DfOverF.

Streams: footprints are written as pixel masks (their non-zero pixels, read a block of units
at a time), and the traces through hdmf's iterative write, a buffer of frames at a time from
the lazy traces, so no unit x frame array is ever held.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from .results import Results

__all__ = ["write_nwb"]

NWB_BUFFER_VALUES = 16 * 2**20  # values of a traces array held at once while writing (64 MB)
NWB_CHUNK_VALUES = 2**20  # values per HDF5 chunk of a traces array (4 MB)


def _imaging_plane(nwb: Any, fr: float, dxy: tuple[float, float], meta: dict[str, Any]) -> Any:
    from pynwb.ophys import OpticalChannel

    device = nwb.create_device(name=meta.get("device", "microscope"),
                               description=meta.get("device_description", "two-photon microscope"))
    channel = OpticalChannel(name="OpticalChannel", description=meta.get("channel", "green"),
                             emission_lambda=float(meta.get("emission_lambda", 525.0)))
    return nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=channel, device=device, imaging_rate=float(fr),
        description=meta.get("plane_description", "imaging plane"),
        excitation_lambda=float(meta.get("excitation_lambda", 920.0)),
        indicator=meta.get("indicator", "GCaMP"), location=meta.get("location", "unknown"),
        grid_spacing=[float(d) * 1e-6 for d in dxy], grid_spacing_unit="meters")


def _subject(info: dict[str, Any]) -> Any:
    """The NWB Subject from ``metadata["subject"]`` (NWB requires one; unknown fields say so)."""
    from pynwb.file import Subject

    info = {"subject_id": "unknown", "sex": "U", "description": "not given to calcium-dask", **info}
    return Subject(**info)


def _segmentation(nwb: Any, plane: Any, results: Results) -> Any:
    from pynwb.ophys import ImageSegmentation

    ophys = nwb.create_processing_module(name="ophys", description="calcium-dask: motion correction, CNMF")
    seg = ImageSegmentation(name="ImageSegmentation")
    ophys.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="CNMF spatial components",
                                       imaging_plane=plane)
    ds = results.ds
    for name, doc in (("accepted", "passed component evaluation"), ("snr", "trace SNR"),
                      ("r_value", "spatial correlation with the movie"), ("cnn_pred", "shape-classifier score")):
        if name in ds:
            ps.add_column(name=name, description=doc)
    A = sp.csc_matrix(results.A)
    W = results.dims[1]
    metrics = {n: np.asarray(ds[n].values) for n in ("accepted", "snr", "r_value", "cnn_pred") if n in ds}
    for k in range(A.shape[1]):
        col = A[:, k].tocoo()
        y, x = np.divmod(col.row, W)
        extra = {n: (bool(v[k]) if n == "accepted" else float(v[k])) for n, v in metrics.items()}
        ps.add_roi(pixel_mask=[(int(xi), int(yi), float(w)) for xi, yi, w in zip(x, y, col.data)], **extra)
    return ophys, ps


def _trace_iterator(data: Any) -> Any:
    """An hdmf iterator over a lazy (frames, units) array: a buffer of frames at a time."""
    from hdmf.data_utils import GenericDataChunkIterator

    class _Frames(GenericDataChunkIterator):
        def __init__(self, arr: Any, **kwargs: Any) -> None:
            self.arr = arr
            super().__init__(**kwargs)

        def _get_data(self, selection: tuple) -> np.ndarray:
            with dask.config.set(scheduler="threads"):  # read here, not gathered through a worker
                return np.asarray(self.arr[selection], np.float32)

        def _get_maxshape(self) -> tuple[int, ...]:
            return tuple(int(s) for s in self.arr.shape)

        def _get_dtype(self) -> np.dtype:
            return np.dtype(np.float32)

    T, K = data.shape
    frames = max(1, min(T, NWB_BUFFER_VALUES // max(K, 1)))
    chunk = (max(1, min(T, NWB_CHUNK_VALUES // max(K, 1))), max(1, K))
    return _Frames(data, buffer_shape=(max(chunk[0], frames // chunk[0] * chunk[0]), max(1, K)), chunk_shape=chunk)


def write_nwb(results: Results, path: str, *, session_description: str = "calcium-dask results",
              identifier: str | None = None, session_start_time: datetime | None = None,
              fr: float | None = None, dxy: tuple[float, float] | None = None,
              metadata: dict[str, Any] | None = None) -> str:
    """Write footprints, traces and dF/F to an NWB file that pynwb reads back.

    Parameters
    ----------
    results : Results
    path : str
        Output ``.nwb`` file (overwritten).
    session_start_time : datetime, optional
        Default: now, in UTC (NWB requires a time zone).
    fr, dxy : optional
        Frame rate and pixel size; default from the store's attributes.
    metadata : dict, optional
        ``device``, ``indicator``, ``location``, ``excitation_lambda``, ``emission_lambda``,
        ``experimenter``, ``institution``, ``keywords``, ``experiment_description`` and
        ``subject`` (a dict of pynwb ``Subject`` fields: species, sex, age...).

    Returns
    -------
    str
        ``path``.
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import DfOverF, Fluorescence

    attrs = results.ds.attrs
    fr = float(fr or attrs.get("fr") or 30.0)
    dxy = tuple(dxy or attrs.get("params", {}).get("data", {}).get("dxy") or (1.0, 1.0))
    meta = metadata or {}
    nwb = NWBFile(session_description=session_description, identifier=identifier or str(uuid.uuid4()),
                  session_start_time=session_start_time or datetime.now(timezone.utc),
                  source_script="calcium-dask", source_script_file_name="calcium_dask/nwb.py",
                  experimenter=meta.get("experimenter"), institution=meta.get("institution"),
                  experiment_description=meta.get("experiment_description",
                                                  "two-photon calcium imaging processed with calcium-dask"),
                  keywords=meta.get("keywords", ["calcium imaging", "CNMF", "motion correction"]),
                  subject=_subject(meta.get("subject", {})))
    plane = _imaging_plane(nwb, fr, dxy, meta)
    ophys, ps = _segmentation(nwb, plane, results)
    rois = ps.create_roi_table_region(region=list(range(results.ds.sizes["unit"])), description="all units")
    C = da.asarray(results.C)
    raw = C + da.asarray(results.YrA) if results.YrA is not None else C
    series = {"Fluorescence": (Fluorescence, raw, "raw traces (denoised C + residuals YrA), a.u."),
              "DfOverF": (DfOverF, results.F_dff, "dF/F")}
    for name, (container, data, doc) in series.items():
        if data is None:
            continue
        holder = container(name=name)
        ophys.add(holder)  # first, so that the series and its ROI table share an ancestor
        holder.create_roi_response_series(name="RoiResponseSeries", data=_trace_iterator(da.asarray(data).T),
                                          rois=rois, unit="n.a.", rate=fr, description=doc)
    with NWBHDF5IO(path, "w") as io:
        io.write(nwb)
    return path
