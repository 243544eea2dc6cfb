"""Shared helpers for the deployment tests: the manifests, the schemas, the Kubernetes version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCHEMAS = DEPLOY / "schemas"
DOCKER = REPO / "docker"

#: Kubernetes version the standard objects are validated against (kubernetes-validate's schemas)
K8S_VERSION = "1.31.0"

#: custom resource kind -> its JSON schema in deploy/schemas
CR_SCHEMAS = {"DaskCluster": "daskcluster.schema.json", "DaskAutoscaler": "daskautoscaler.schema.json"}


def load_manifests() -> dict[str, list[dict[str, Any]]]:
    """Every YAML document in ``deploy/``, by file name."""
    out = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        out[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def all_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, docs in load_manifests().items() for doc in docs]


def only(kind: str) -> dict[str, Any]:
    """The one document of ``kind`` in ``deploy/``."""
    docs = [doc for _, doc in all_documents() if doc["kind"] == kind]
    assert len(docs) == 1, f"expected one {kind} in deploy/, found {len(docs)}"
    return docs[0]


def schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / CR_SCHEMAS[kind]).read_text())


def containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container (and init container) anywhere inside a manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


@pytest.fixture(scope="session")
def manifests() -> dict[str, list[dict[str, Any]]]:
    return load_manifests()
