"""fsspec filesystems that misbehave on purpose, over the local disk.

- ``rofile://``: a read-only mount (every write raises ``PermissionError(EROFS)``), which
  works even for root, whom ``chmod`` does not stop.
- ``flaky://``: object storage with transient faults: in a process set up with
  ``fail_every=n``, the 1st, (n+1)-th, (2n+1)-th... file opened fails on its first read with
  ``ConnectionResetError``, as an S3 GET does when a connection drops; the next attempt
  succeeds. Deterministic: the first read of the movie on each worker fails.
- ``fullfs://``: a disk that fills up: in a process set up with ``capacity=n``, writes
  beyond ``n`` bytes raise ``OSError(ENOSPC)``; ``capacity=0`` is an unlimited disk.

Workers find the protocols through :class:`RegisterFaultFS`, a worker plugin (also applied
to workers that restart); registering it again resets the count.
"""

from __future__ import annotations

import errno
import itertools
from typing import Any

import fsspec
from distributed.diagnostics.plugin import WorkerPlugin
from fsspec.implementations.local import LocalFileSystem

FAIL_EVERY = 5  # what the tests use


class _StripMixin:
    prefix = ""

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = fsspec.utils.stringify_path(path)
        if path.startswith(cls.prefix):
            path = path[len(cls.prefix):]
        return LocalFileSystem._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return self.prefix + self._strip_protocol(name)


def _read_only(path: Any) -> PermissionError:
    return PermissionError(errno.EROFS, "Read-only file system", str(path))


class ReadOnlyFileSystem(_StripMixin, LocalFileSystem):
    protocol = "rofile"
    prefix = "rofile://"

    def _open(self, path, mode="rb", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise _read_only(path)
        return super()._open(path, mode, *args, **kwargs)

    def _refuse(self, path, *args, **kwargs):
        raise _read_only(path)

    mkdir = makedirs = rm = rm_file = rmdir = touch = mv = cp_file = put_file = pipe_file = _refuse


class _FileProxy:
    """A file object passing everything through to the real one."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FileProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


class _FailFirstRead(_FileProxy):
    """A file whose first read raises a transient network error; the rest pass through."""

    def __init__(self, f: Any) -> None:
        super().__init__(f)
        self._failed = False

    def _maybe_fail(self) -> None:
        if not self._failed:
            self._failed = True
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def read(self, *args: Any) -> bytes:
        self._maybe_fail()
        return self._f.read(*args)

    def readinto(self, b: Any) -> int:
        self._maybe_fail()
        return self._f.readinto(b)

    def __iter__(self):
        return iter(self._f)


class FlakyFileSystem(_StripMixin, LocalFileSystem):
    protocol = "flaky"
    prefix = "flaky://"
    fail_every = 0  # 0: no faults in this process
    _opens = itertools.count()
    failures = 0

    def _open(self, path, mode="rb", *args, **kwargs):
        f = super()._open(path, mode, *args, **kwargs)
        n = next(FlakyFileSystem._opens)
        if "r" in mode and self.fail_every and n % self.fail_every == 0:
            FlakyFileSystem.failures += 1
            return _FailFirstRead(f)
        return f

    def cat_file(self, path, start=None, end=None, **kwargs):
        with self._open(path, "rb") as f:
            if start:
                f.seek(start)
            return f.read() if end is None else f.read(end - (start or 0))


class _Counted(_FileProxy):
    """A file open for writing whose bytes count against the disk's capacity."""

    def __init__(self, f: Any, path: str) -> None:
        super().__init__(f)
        self._path = path

    def write(self, data: Any) -> int:
        fs = FullFileSystem
        n = memoryview(data).nbytes
        if fs.capacity and fs.used + n > fs.capacity:
            raise OSError(errno.ENOSPC, "No space left on device", self._path)
        fs.used += n
        return self._f.write(data)


class FullFileSystem(_StripMixin, LocalFileSystem):
    protocol = "fullfs"
    prefix = "fullfs://"
    capacity = 0  # bytes this process may write; 0: unlimited
    used = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_mkdir", True)  # as zarr asks of file://
        super().__init__(*args, **kwargs)

    def _open(self, path, mode="rb", *args, **kwargs):
        f = super()._open(path, mode, *args, **kwargs)
        return _Counted(f, str(path)) if any(c in mode for c in "wax+") else f


def register(fail_every: int = 0, capacity: int = 0) -> None:
    """Make the protocols known in this process; ``flaky://`` and ``fullfs://`` fail as the
    module says."""
    fsspec.register_implementation("rofile", ReadOnlyFileSystem, clobber=True)
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    fsspec.register_implementation("fullfs", FullFileSystem, clobber=True)
    FlakyFileSystem.fail_every = int(fail_every)
    FlakyFileSystem._opens = itertools.count()
    FlakyFileSystem.failures = 0
    FullFileSystem.capacity, FullFileSystem.used = int(capacity), 0


def failures() -> int:
    return FlakyFileSystem.failures


class RegisterFaultFS(WorkerPlugin):
    name = "calcium-dask-test-fault-fs"

    def __init__(self, fail_every: int = 0, capacity: int = 0) -> None:
        self.fail_every, self.capacity = fail_every, capacity

    def setup(self, worker: Any) -> None:
        register(self.fail_every, self.capacity)
