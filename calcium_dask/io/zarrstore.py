"""zarr movies (format 2 and 3, local or object storage)."""

from __future__ import annotations

from typing import Any

from ..errors import MovieError

__all__ = ["zarr_array"]

# where a results store of this project keeps its movies
_KNOWN = ("movie/corrected", "corrected", "mov", "movie", "data")


def _arrays(group: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, Any]]:
    import zarr

    out = []
    for name, member in group.members():
        path = f"{prefix}{name}"
        if isinstance(member, zarr.Array):
            out.append((path, member))
        elif depth > 1:
            out.extend(_arrays(member, f"{path}/", depth - 1))
    return out


def zarr_array(url: str, *, dataset: str | None = None,
               storage_options: dict | None = None) -> tuple[Any, dict]:
    """The zarr array holding the movie (``dataset=`` picks one inside a group)."""
    import zarr

    so = storage_options or None
    try:
        node = zarr.open(store=url, mode="r", storage_options=so) if "://" in url else \
            zarr.open(store=url, mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, ValueError) as e:
        raise MovieError(url, f"no zarr array or group here ({type(e).__name__}: {e})") from None
    if isinstance(node, zarr.Array):
        arr = node
    elif dataset is not None:
        try:
            arr = node[dataset]
        except KeyError:
            raise MovieError(url, f"no array '{dataset}' in this zarr group") from None
    else:
        arrays = [(n, a) for n, a in _arrays(node) if a.ndim >= 3]
        known = [(n, a) for n, a in arrays if n in _KNOWN]
        pick = known[:1] if known else arrays
        if len(pick) != 1:
            names = ", ".join(n for n, _ in arrays) or "none with 3 or more dimensions"
            raise MovieError(url, f"choose the movie's array with dataset= (arrays: {names})")
        arr = pick[0][1]
    if arr.ndim == 2:
        raise MovieError(url, f"a single 2-D image {arr.shape}, not a movie")
    attrs = dict(arr.attrs)
    meta = {k: attrs[k] for k in ("fr", "dxy") if k in attrs}
    return arr, meta
