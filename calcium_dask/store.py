"""The results store: a zarr group on any fsspec URL, written stage by stage.

A stage writes its data first and its completion mark last (``stages`` in the root
attributes), so a crashed run never looks complete and a rerun resumes at the first
unfinished stage. DESIGN.md section 2 is the contract for what each group holds.

Every write (arrays or attributes) refreshes the store's consolidated metadata, so
``xarray.open_zarr(url, group=...)`` reads the whole hierarchy in one request (instead of
one per array, which is slow on object storage) and without a warning. This package's own
reads do not use it: they list the store, so a run killed before a refresh never makes
them see a stale view.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import xarray as xr
import zarr

from ._version import __version__
from .errors import StoreError
from .io.urls import normalize

__all__ = ["ResultsStore", "as_store", "made_with", "STAGE_ORDER"]

#: the pipeline's stages in order: rerunning one makes every later one stale
STAGE_ORDER = ("motion", "cnmf", "evaluate")

OUR_GROUPS = ("motion", "summary", "summary_raw", "summary_align", "movie", "discarded")  # a store written by stages
# consolidated metadata describe the whole store: rewrites from the threads of one process
# (the fields of view of a session) take turns, so the last one sees every group's writes
_CONSOLIDATE = threading.Lock()


def as_store(store: ResultsStore | str, storage_options: dict | None = None) -> ResultsStore:
    """A :class:`ResultsStore` from a store or a URL."""
    return store if isinstance(store, ResultsStore) else ResultsStore(str(store), dict(storage_options or {}))


def made_with(record: Any, params_digest: str) -> bool:
    """Whether a stage's completion ``record`` (from :meth:`ResultsStore.stages`) was made
    with parameters of this digest (a record of an older version has none)."""
    return isinstance(record, dict) and record.get("params_digest") == params_digest


@dataclass
class ResultsStore:
    """Handle on a results store (picklable: a URL and options, no open objects).

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the zarr group (e.g. ``s3://bucket/run.zarr``).
    storage_options : dict, optional
        fsspec options (credentials come from the environment, never from the store).
    group : str, optional
        A field of view of a multi-plane or multi-ROI session (``plane0``, ``roi1``...): the
        zarr group inside the store that holds its results, laid out as a whole store's.
        Every method then works inside that group; consolidated metadata stay the root's.
    """

    url: str
    storage_options: dict = field(default_factory=dict)
    group: str | None = None

    def __post_init__(self) -> None:
        self.url = normalize(self.url)
        self.group = self.group.strip("/") or None if self.group else None

    @property
    def location(self) -> str:
        """The URL, with the field of view's group when there is one (for messages)."""
        return f"{self.url.rstrip('/')}/{self.group}" if self.group else self.url

    def path(self, name: str | None = None) -> str | None:
        """``name`` (a group or array path of this store) as a path from the zarr root."""
        parts = [p for p in (self.group, name) if p]
        return "/".join(parts) or None

    def field(self, group: str) -> ResultsStore:
        """The store of one field of view of this (session) store."""
        return ResultsStore(self.url, dict(self.storage_options), group)

    # -- zarr access ---------------------------------------------------------------
    def _kw(self) -> dict[str, Any]:
        return {"storage_options": self.storage_options} if "://" in self.url and self.storage_options else {}

    def root(self, mode: str = "a") -> zarr.Group:
        """The root group (``mode='a'`` creates it)."""
        try:
            # listed, never from the consolidated metadata, which a killed run can leave stale
            return zarr.open_group(self.url, path=self.group or "", mode=mode, use_consolidated=False,
                                   **self._kw())
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.ContainsArrayError) as e:
            raise StoreError(f"{self.location}: no results store here ({type(e).__name__}: {e})") from None

    def array(self, path: str, mode: str = "r+") -> zarr.Array:
        """One array of the store, e.g. ``movie/corrected``."""
        return zarr.open_array(self.url, path=self.path(path), mode=mode, **self._kw())

    def write(self, ds: xr.Dataset, group: str | None = None, **kwargs: Any) -> Any:
        """Write an xarray Dataset into ``group`` (overwriting that group only).

        With ``compute=False`` the arrays are created now and their chunks written when
        the returned delayed object is computed."""
        kwargs.setdefault("mode", "w")
        out = ds.to_zarr(self.url, group=self.path(group), storage_options=self.storage_options or None,
                         consolidated=False, **kwargs)
        self._written()
        return out

    def clear_root_arrays(self) -> None:
        """Delete every array of the root group (not the subgroups nor the attributes)."""
        root = self.root()
        for name in list(root.array_keys()):
            del root[name]
        self._written()

    def write_root(self, ds: xr.Dataset, **kwargs: Any) -> Any:
        """Write variables into the root group, keeping the other groups and root attributes.

        With ``compute=False`` the arrays are created now and their chunks written when
        the returned delayed object is computed."""
        keep = dict(self.root().attrs)  # xarray replaces a group's attributes with ds.attrs
        for name in list(ds.variables):
            self._remove(str(name))
        out = ds.to_zarr(self.url, group=self.group, mode="a", storage_options=self.storage_options or None,
                         consolidated=False, **kwargs)
        self.root().attrs.put({**keep, **json.loads(json.dumps(ds.attrs))})
        self._written()
        return out

    def _written(self) -> None:
        """After a write: refresh the consolidated metadata, at once for a whole store; for a
        field of view of a session at its next stage mark (the session's metadata describe
        every field of view, and the root's document holds them, so a write inside a group
        leaves them stale, never dropped; meanwhile readers see the last finished stage)."""
        if self.group is None:
            self.consolidate()

    def consolidate(self) -> None:
        """Write the consolidated metadata of the whole store (see the module docstring)."""
        with _CONSOLIDATE, warnings.catch_warnings():  # zarr: "not part of the Zarr format 3 spec" (yet)
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            # an array another field of view's thread is creating right now: the next consolidation has it
            warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component")
            zarr.consolidate_metadata(zarr.open_group(self.url, mode="a", use_consolidated=False,
                                                      **self._kw()).store)

    def read(self, group: str | None = None) -> xr.Dataset:
        """Open a group lazily as a Dataset."""
        try:
            return xr.open_zarr(self.url, group=self.path(group), storage_options=self.storage_options or None,
                                consolidated=False)
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError) as e:
            raise StoreError(f"{self.location}: no group '{group or '/'}' in the results store ({e})") from None

    def remove(self, path: str) -> None:
        """Delete an array or group of the store if it is there."""
        self._remove(path)
        self._written()

    def _remove(self, path: str) -> None:
        root = self.root()
        parent, _, name = path.rpartition("/")
        node = root[parent] if parent and parent in root else (root if not parent else None)
        if node is not None and name in node:
            del node[name]

    def movie(self, path: str = "movie/corrected") -> xr.DataArray:
        """A movie of the store, lazily, tagged so that CNMF tasks read its tiles themselves."""
        group, _, name = path.rpartition("/")
        da = self.read(group or None)[name]
        t_chunk = int(da.encoding["chunks"][0]) if "chunks" in da.encoding else None
        if da.dtype == "float64":  # 16-bit codes decoded with a (JSON) float scale: float32 is exact enough
            da = da.astype("float32")
        da.attrs.update(zarr_url=self.url, zarr_path=self.path(path), zarr_storage_options=self.storage_options,
                        zarr_t_chunk=t_chunk)
        return da

    def foreign(self) -> str | None:
        """What the URL holds when it is not empty and not a results store (None otherwise)."""
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(self.url, **self.storage_options)
        if self.group:
            path = f"{path.rstrip('/')}/{self.group}"
        if not fs.exists(path):
            return None
        if not fs.isdir(path):
            return "a file"
        try:
            group = zarr.open_group(self.url, path=self.group or "", mode="r", use_consolidated=False, **self._kw())
        except Exception:  # noqa: BLE001 - not a group: an array, or plain files
            try:
                zarr.open_array(self.url, path=self.group or "", mode="r", **self._kw())
                return "a zarr array"
            except Exception:  # noqa: BLE001
                return "a folder of other files" if fs.ls(path) else None
        ours = {"version", "stages", "fields_of_view"} & set(group.attrs) or set(OUR_GROUPS) & set(group.group_keys())
        return None if ours or not list(group.keys()) else "a zarr group of another tool"

    def exists(self) -> bool:
        """Whether the store's zarr group (its field of view's, when it has one) is there."""
        try:
            self.root(mode="r")
            return True
        except StoreError:
            return False

    # -- stage marks ---------------------------------------------------------------
    def stages(self) -> dict[str, Any]:
        """Completed stages -> their record (time, seconds, version...)."""
        if not self.exists():
            return {}
        return dict(self.root(mode="r").attrs.get("stages", {}))

    def is_complete(self, stage: str) -> bool:
        """Whether ``stage`` has its completion mark here (with any parameters)."""
        return stage in self.stages()

    def completed(self, stage: str, params_digest: str) -> bool:
        """Whether ``stage`` completed here with parameters of this digest (see
        :meth:`calcium_dask.params.Params.digest`): a step given this store may reuse it."""
        return made_with(self.stages().get(stage), params_digest)

    def clear_marks_from(self, stage: str) -> None:
        """Forget ``stage`` and every later stage of :data:`STAGE_ORDER` (before rewriting
        ``stage``: what follows it would be stale)."""
        later = STAGE_ORDER[STAGE_ORDER.index(stage):] if stage in STAGE_ORDER else (stage,)
        for s in later:
            self.clear_mark(s)

    def clear_mark(self, stage: str) -> None:
        """Forget a stage's completion before rewriting it (so a crash leaves it incomplete)."""
        root = self.root()
        stages = dict(root.attrs.get("stages", {}))
        if stages.pop(stage, None) is not None:
            root.attrs["stages"] = stages
            self.consolidate()  # the group was opened without it: its rewrite dropped it

    def mark_complete(self, stage: str, seconds: float, **info: Any) -> None:
        """Record ``stage`` as finished: the last write of a stage."""
        root = self.root()
        stages = dict(root.attrs.get("stages", {}))
        stages[stage] = {"seconds": round(float(seconds), 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                         "version": __version__, **info}
        root.attrs["stages"] = stages
        self.consolidate()

    def set_group_attrs(self, group: str, **attrs: Any) -> None:
        """Attributes of a group of the store (JSON-serialisable values)."""
        self.root()[group].attrs.update(json.loads(json.dumps(attrs)))
        self._written()

    def set_array_attrs(self, path: str, **attrs: Any) -> None:
        """Attributes of an array of the store (JSON-serialisable values)."""
        self.array(path).attrs.update(json.loads(json.dumps(attrs)))
        self._written()

    def set_attrs(self, **attrs: Any) -> None:
        """Root attributes (values must be JSON-serialisable)."""
        root = self.root()
        root.attrs.update(json.loads(json.dumps(attrs)))
        self._written()
