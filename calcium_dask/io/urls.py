"""fsspec URLs: one place that turns a path or URL into a filesystem, with clear errors."""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from ..errors import MovieError

__all__ = ["filesystem", "normalize", "expand_files", "read_head"]


def normalize(url: str | os.PathLike) -> str:
    """A local path becomes absolute (workers may run elsewhere); URLs are left alone."""
    s = os.fspath(url)
    if "://" in s or s.startswith("memory:"):
        return s
    return os.path.abspath(os.path.expanduser(s))


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(fs, path)`` for ``url``; an unknown scheme or a missing backend is a MovieError."""
    try:
        return url_to_fs(url, **(storage_options or {}))
    except ValueError as e:  # fsspec: "Protocol not known: foo"
        scheme = url.split("://", 1)[0]
        raise MovieError(url, f"unknown URL scheme '{scheme}' ({e})") from None
    except ImportError as e:
        scheme = url.split("://", 1)[0]
        raise MovieError(url, f"URL scheme '{scheme}' needs an optional package: {e}") from None


def expand_files(url: str | list | tuple, storage_options: dict | None = None) -> list[str]:
    """A URL, a glob or a list of them -> the sorted list of file URLs (globs expanded)."""
    urls = [normalize(u) for u in url] if isinstance(url, (list, tuple)) else [normalize(url)]
    out: list[str] = []
    for u in urls:
        if any(c in u for c in "*?["):
            fs, path = filesystem(u, storage_options)
            matches = sorted(fs.glob(path))
            if not matches:
                raise MovieError(u, "no file matches this pattern")
            out.extend(fs.unstrip_protocol(m) if "://" in u else m for m in matches)
        else:
            out.append(u)
    return out


def read_head(url: str, n: int = 16, storage_options: dict | None = None) -> bytes:
    """The first ``n`` bytes of a file (its magic number)."""
    with fsspec.open(url, "rb", **(storage_options or {})) as f:
        return f.read(n)
