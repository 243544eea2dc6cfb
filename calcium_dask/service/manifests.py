"""A batch manifest sent over HTTP -> the runs to queue, checked by :func:`calcium_dask.batch.load_manifest`.

The service adds two rules to the batch command's: every path must lie under an allowed
root (checked first, before anything touches storage: 403), and a manifest cannot carry
``storage_options`` (credentials come from the service's environment, never from a
request, and would otherwise be stored in its database).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from typing import Any

from fastapi import HTTPException

from ..batch import ManifestError, Session, load_manifest
from .paths import AllowedRoots, PathInvalid, PathRefused

__all__ = ["parse_manifest"]

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _document(body: bytes, ctype: str) -> dict[str, Any]:
    import yaml

    try:
        if ctype == "application/json":
            doc = json.loads(body)
        elif ctype in YAML_TYPES:
            doc = yaml.safe_load(body.decode("utf-8"))
        else:
            raise HTTPException(415, "send the manifest as application/json or application/yaml")
    except (ValueError, yaml.YAMLError) as e:
        raise ManifestError(f"manifest: not valid {'JSON' if ctype == 'application/json' else 'YAML'} "
                            f"({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest: expected a mapping with 'sessions', got {type(doc).__name__}")
    return doc


def _check_paths(doc: dict[str, Any], roots: AllowedRoots) -> None:
    """Every input and output under a root, before load_manifest looks at storage."""
    sessions = doc.get("sessions") if isinstance(doc.get("sessions"), list) else []
    if doc.get("storage_options") or any(isinstance(e, dict) and e.get("storage_options") for e in sessions):
        raise ManifestError("manifest: storage_options are not accepted by the service "
                            "(credentials come from the service's environment)")
    for i, entry in enumerate(sessions):
        if not isinstance(entry, dict):
            continue  # load_manifest names the problem
        label = f"session '{entry['name']}'" if isinstance(entry.get("name"), str) else f"session #{i + 1}"
        try:
            if isinstance(entry.get("input"), (str, list)):
                roots.check_input(entry["input"], must_exist=False)
            if isinstance(entry.get("output"), str):
                roots.check_output(entry["output"])
        except (PathRefused, PathInvalid) as e:
            raise type(e)(f"manifest: {label}: {e}") from None


def parse_manifest(svc: Any, body: bytes, ctype: str, state_dir: Any) -> list[Session]:
    """The runs of a manifest sent as JSON or YAML, every problem a one-line error.

    Raises
    ------
    PathRefused
        A path outside the allowed roots (403).
    ManifestError, PathInvalid
        Anything else wrong with the manifest (422).
    """
    import yaml

    roots: AllowedRoots = svc.config.roots
    doc = _document(body, ctype)
    _check_paths(doc, roots)
    path = write_temp(state_dir, yaml.safe_dump(doc).encode(), ".yaml")
    try:
        manifest = load_manifest(path)
    except ManifestError as e:
        raise ManifestError(str(e).replace(path, "manifest", 1)) from None
    finally:
        os.remove(path)
    return [replace(s, input=roots.check_input(s.input), output=roots.check_output(s.output))
            for s in manifest.sessions]


def write_temp(state_dir: Any, data: bytes, suffix: str) -> str:
    """A private temporary file in the service's state folder (the caller removes it)."""
    tmp = os.path.join(state_dir, "tmp")
    os.makedirs(tmp, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix=suffix, dir=tmp)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
