"""Exceptions that the command line turns into one clear line and exit code 2."""

from __future__ import annotations

__all__ = ["CalciumDaskError", "MovieError", "ParamsError", "StoreError", "ClusterError",
           "IgnoredParametersWarning", "one_line"]


class CalciumDaskError(Exception):
    """Base class of the errors a user can fix (bad input, bad parameters, bad store)."""


class MovieError(CalciumDaskError, ValueError):
    """A movie cannot be opened or read; the message starts with the file it concerns."""

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self) -> tuple:
        # raised in Dask workers: it must unpickle with both of its arguments
        return (type(self), (self.source, self.problem))


class ParamsError(CalciumDaskError, ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


class IgnoredParametersWarning(UserWarning):
    """A parameter dict (CaImAn's) names parameters that calcium-dask ignores although they
    change CaImAn's results; the message names them all, in one line."""


class StoreError(CalciumDaskError, ValueError):
    """A results store is missing, incomplete, or was made with other inputs."""


class ClusterError(CalciumDaskError, OSError):
    """The Dask scheduler cannot be reached or the cluster cannot start."""


def one_line(e: BaseException, max_len: int | None = None) -> str:
    """An exception as one line (an OSError names its file), cut to ``max_len`` characters."""
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {e.strerror or text}"
    text = " ".join(text.split())
    return text if max_len is None or len(text) <= max_len else text[:max_len - 3] + "..."
