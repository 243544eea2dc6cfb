"""calcium_dask.kube: the DaskCluster spec offline, and KubeCluster behind the optional extra."""

from __future__ import annotations

import copy
import sys
import types

import jsonschema
import pytest
import yaml

from calcium_dask import kube
from calcium_dask.kube import (DEFAULT_IMAGE, WORKER_RESOURCES, cluster_spec, kube_cluster,
                               scheduler_address)

from .conftest import DEPLOY, schema


def _valid(spec: dict) -> None:
    jsonschema.Draft202012Validator(schema("DaskCluster")).validate(spec)


def _container(spec: dict, part: str) -> dict:
    return spec["spec"][part]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_deploy_manifest_is_what_cluster_spec_builds():
    """deploy/daskcluster.yaml and the Python API describe the same cluster."""
    manifest = yaml.safe_load((DEPLOY / "daskcluster.yaml").read_text())
    built = cluster_spec("calcium-dask", namespace="calcium-dask", storage_secret="calcium-dask-storage")
    assert built == manifest


@pytest.mark.parametrize("kwargs", [
    {},
    {"n_workers": 0},
    {"n_workers": 40, "namespace": "imaging", "storage_secret": "s3-creds", "idle_timeout": 3600},
    {"resources": {"limits": {"cpu": "2", "memory": "16Gi"}, "requests": {"cpu": "2", "memory": "16Gi"}}},
    {"resources": {"requests": {"cpu": "250m"}}},
    {"env": {"DASK_DISTRIBUTED__WORKER__MEMORY__SPILL": "0.8"}},
    {"env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]},
    {"image": "registry.example.org/lab/calcium-dask@sha256:" + "a" * 64},
])
def test_spec_validates_against_the_schema(kwargs):
    _valid(cluster_spec("lab-cluster", **kwargs))


def test_spec_runs_one_threaded_workers_of_the_package_image():
    spec = cluster_spec(n_workers=3)
    worker = _container(spec, "worker")
    assert spec["spec"]["worker"]["replicas"] == 3
    assert worker["image"] == _container(spec, "scheduler")["image"] == DEFAULT_IMAGE
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "1"
    assert worker["resources"] == WORKER_RESOURCES
    assert _env(worker)["OMP_NUM_THREADS"]["value"] == "1"


def test_memory_limit_follows_the_container_limit_or_dask_decides():
    worker = _container(cluster_spec(), "worker")
    assert worker["args"][worker["args"].index("--memory-limit") + 1] == "$(DASK_WORKER_MEMORY_LIMIT)"
    assert "DASK_WORKER_MEMORY_LIMIT" in _env(worker)
    unlimited = _container(cluster_spec(resources={"requests": {"cpu": "1"}}), "worker")
    assert unlimited["args"][unlimited["args"].index("--memory-limit") + 1] == "auto"
    assert "DASK_WORKER_MEMORY_LIMIT" not in _env(unlimited)


def test_extra_env_replaces_defaults_of_the_same_name():
    spec = cluster_spec(env={"OMP_NUM_THREADS": "2", "MY_SETTING": "x"})
    for part in ("scheduler", "worker"):
        names = [e["name"] for e in _container(spec, part)["env"]]
        assert names.count("OMP_NUM_THREADS") == 1
        env = _env(_container(spec, part))
        assert env["OMP_NUM_THREADS"]["value"] == "2" and env["MY_SETTING"]["value"] == "x"


def test_credentials_come_from_the_secret_and_only_reach_workers():
    spec = cluster_spec(storage_secret="s3-creds")
    worker_env = _env(_container(spec, "worker"))
    for key, optional in kube.STORAGE_SECRET_KEYS.items():
        assert "value" not in worker_env[key]
        assert worker_env[key]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": key,
                                                                 "optional": optional}
    assert not set(kube.STORAGE_SECRET_KEYS) & set(_env(_container(spec, "scheduler")))
    assert not set(kube.STORAGE_SECRET_KEYS) & set(_env(_container(cluster_spec(), "worker")))


def test_spec_does_not_share_state_with_the_defaults():
    spec = cluster_spec()
    _container(spec, "worker")["resources"]["limits"]["memory"] = "1Gi"
    assert WORKER_RESOURCES["limits"]["memory"] == "4Gi"
    assert cluster_spec() == cluster_spec()
    a = cluster_spec()
    a["spec"]["scheduler"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/x"
    assert a["spec"]["scheduler"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "Calcium"}, "lower-case"),
    ({"name": "1cluster"}, "start with a letter"),
    ({"name": "c" * 54}, "at most 53"),
    ({"n_workers": -1}, "n_workers"),
    ({"n_workers": 2.5}, "n_workers"),
    ({"resources": {"limit": {"cpu": "1"}}}, "'limits' and 'requests'"),
    ({"resources": {"limits": "4Gi"}}, "mapping"),
    ({"env": [{"value": "1"}]}, "'name'"),
    ({"idle_timeout": -5}, "idle_timeout"),
])
def test_bad_arguments_say_what_is_wrong(kwargs, match):
    kwargs = {"name": "calcium-dask", **kwargs}
    with pytest.raises(ValueError, match=match):
        cluster_spec(kwargs.pop("name"), **kwargs)


def test_scheduler_address_names_the_operators_service():
    assert scheduler_address("lab", "imaging") == "tcp://lab-scheduler.imaging.svc.cluster.local:8786"
    spec = cluster_spec("lab")
    assert spec["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == "lab"


def test_kube_cluster_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(ImportError, match=r"calcium-dask\[kubernetes\]"):
        kube_cluster(n_workers=1)


def test_kube_cluster_hands_the_spec_to_kubecluster(monkeypatch):
    calls: list[dict] = []

    class FakeKubeCluster:
        def __init__(self, **kwargs):
            calls.append(copy.deepcopy(kwargs))

    package = types.ModuleType("dask_kubernetes")
    operator = types.ModuleType("dask_kubernetes.operator")
    operator.KubeCluster = FakeKubeCluster  # type: ignore[attr-defined]
    package.operator = operator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dask_kubernetes", package)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", operator)

    cluster = kube_cluster("lab", n_workers=5, namespace="imaging", storage_secret="s3-creds",
                           shutdown_on_close=False)
    assert isinstance(cluster, FakeKubeCluster)
    (kwargs,) = calls
    assert kwargs["namespace"] == "imaging" and kwargs["shutdown_on_close"] is False
    assert kwargs["custom_cluster_spec"] == cluster_spec("lab", n_workers=5, namespace="imaging",
                                                         storage_secret="s3-creds")
