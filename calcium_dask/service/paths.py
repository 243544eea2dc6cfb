"""Where runs may read and write: every input and output must lie under an allowed root.

A path is judged by what it points at, not by how it is spelt: local paths have ``..`` and
symbolic links resolved (``os.path.realpath``), ``file://`` URLs become local paths, and a
glob's matches are each resolved too (a link inside a root may lead out of it). Spellings
that could point somewhere else than they seem are refused outright: chained fsspec URLs
(``a::b``), ``..`` or percent-encoded separators in a URL, ``file://`` with a host, and URL
schemes no root uses.
"""

from __future__ import annotations

import glob as globmod
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CalciumDaskError

__all__ = ["AllowedRoots", "PathRefused", "PathInvalid"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_WILDCARD = re.compile(r"[*?\[]")
MAX_LEN = 4096
MAX_FILES = 100_000  # a glob that matches more is refused rather than listed


class PathRefused(CalciumDaskError, PermissionError):
    """A path outside the allowed roots, or spelt to hide where it points (HTTP 403)."""


class PathInvalid(CalciumDaskError, ValueError):
    """Not a usable path: empty, relative, with control characters, missing input (HTTP 422)."""


def _is_url(s: str) -> bool:
    return "://" in s


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class AllowedRoots:
    """The folders and URL prefixes runs may use, in canonical form."""

    local: tuple[str, ...]
    remote: tuple[str, ...]

    @classmethod
    def from_options(cls, roots: Sequence[str]) -> AllowedRoots:
        """Canonical roots from ``--allowed-root`` values; a local root must be an existing folder."""
        local, remote = [], []
        for r in roots:
            r = str(r)
            if r.startswith("file://"):
                r = _file_url_path(r)
            if _is_url(r):
                remote.append(_canonical_url(r, what="allowed root"))
                continue
            if not os.path.isabs(os.path.expanduser(r)):
                r = os.path.abspath(os.path.expanduser(r))
            real = os.path.realpath(os.path.expanduser(r))
            if not os.path.isdir(real):
                raise PathInvalid(f"allowed root {r}: not an existing folder")
            local.append(real)
        return cls(tuple(local), tuple(remote))

    def __bool__(self) -> bool:
        return bool(self.local or self.remote)

    def describe(self) -> str:
        return ", ".join(self.local + self.remote) or "(none)"

    # -- checks ------------------------------------------------------------------------
    def check_output(self, value: object) -> str:
        """The canonical form of an output store location (it need not exist yet)."""
        s = self._canonical(value, "output")
        if _WILDCARD.search(s):
            raise PathInvalid(f"output {s}: must be one path or URL (no wildcards)")
        self._require_under(s, "output", value)
        return s

    def check_input(self, value: object, *, must_exist: bool = True) -> str | list[str]:
        """The canonical form of an input (a path, URL or glob, or a list of them).

        Globs are kept as globs; each of their matches must also lie under a root. With
        ``must_exist``, a missing input or a glob matching nothing is a PathInvalid.
        """
        items = value if isinstance(value, list) else [value]
        if not items:
            raise PathInvalid("input: expected a path, URL or glob, or a non-empty list of them")
        out = []
        for item in items:
            s = self._canonical(item, "input")
            self._require_under(s, "input", item)
            if must_exist:
                self._check_exists(s)
            out.append(s)
        return out if isinstance(value, list) else out[0]

    def check_nested(self, inputs: str | list[str], output: str) -> None:
        """An output store must not lie inside an input, nor an input inside the output."""
        for i in inputs if isinstance(inputs, list) else [inputs]:
            base = i if not _WILDCARD.search(i) else posixpath.dirname(i)
            if _under(output, i) or _under(base, output):
                raise PathInvalid(f"output {output} and input {i} overlap; write the results elsewhere")

    # -- helpers -----------------------------------------------------------------------
    def _canonical(self, value: object, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise PathInvalid(f"{what}: expected a path or URL, got {type(value).__name__ if not isinstance(value, str) else 'an empty string'}")
        if len(value) > MAX_LEN or _CONTROL.search(value):
            raise PathInvalid(f"{what}: not a usable path (too long or with control characters)")
        if "::" in value:
            raise PathRefused(f"{what} {value}: chained URLs (::) are not allowed")
        s = _file_url_path(value) if value.startswith("file:") else value
        if _is_url(s):
            return _canonical_url(s, what=what)
        if not os.path.isabs(s):
            raise PathInvalid(f"{what} {value}: must be an absolute path or a URL")
        return os.path.realpath(s)

    def _require_under(self, s: str, what: str, given: object) -> None:
        roots = self.remote if _is_url(s) else self.local
        if not any(_under(s, r) for r in roots):
            shown = s if s == given else f"{given} (that is {s})"
            raise PathRefused(f"{what} {shown} is outside the allowed roots ({self.describe()})")

    def _check_exists(self, s: str) -> None:
        if not _is_url(s):
            if _WILDCARD.search(s):
                matches = globmod.glob(s)
                if not matches:
                    raise PathInvalid(f"input {s}: no file matches this pattern")
                if len(matches) > MAX_FILES:
                    raise PathInvalid(f"input {s}: matches more than {MAX_FILES} files")
                for m in matches:  # a link among the matches may lead out of the root
                    self._require_under(os.path.realpath(m), "input", m)
            elif not os.path.exists(s):
                raise PathInvalid(f"input {s} does not exist")
            return
        from ..io.urls import expand_files, filesystem

        try:
            files = expand_files(s)
            fs, path = filesystem(files[0])
            exists = all(fs.exists(filesystem(f)[1]) for f in files)
        except CalciumDaskError as e:
            raise PathInvalid(f"input {e}") from None
        except Exception as e:  # noqa: BLE001 - credentials, network: one line naming the input
            raise PathInvalid(f"input {s}: cannot check it ({type(e).__name__}: {e})") from None
        if not exists:
            raise PathInvalid(f"input {s} does not exist")


def _file_url_path(s: str) -> str:
    """``file:///abs/path`` (or ``file://localhost/abs/path``) -> ``/abs/path``; anything else refused."""
    rest = s[len("file://"):] if s.startswith("file://") else None
    if rest is not None and rest.startswith("localhost/"):
        rest = rest[len("localhost"):]
    if rest is None or not rest.startswith("/"):
        raise PathRefused(f"{s}: only file:///absolute/path URLs are allowed (no host, no relative path)")
    if _ENCODED.search(rest):
        raise PathRefused(f"{s}: percent-encoded separators are not allowed")
    return rest


def _canonical_url(s: str, *, what: str) -> str:
    scheme, _, rest = s.partition("://")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise PathInvalid(f"{what} {s}: not a URL scheme: {scheme!r}")
    if _ENCODED.search(rest) or "\\" in rest:
        raise PathRefused(f"{what} {s}: percent-encoded or backslash separators are not allowed")
    if ".." in rest.split("/"):
        raise PathRefused(f"{what} {s}: '..' is not allowed in a URL")
    rest = posixpath.normpath("/" + rest).lstrip("/")
    return f"{scheme.lower()}://{rest}"
