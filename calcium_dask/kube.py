"""Dask clusters on Kubernetes, through the dask-kubernetes operator.

:func:`cluster_spec` builds a ``DaskCluster`` resource (``kubernetes.dask.org/v1``) as a
plain dict, with no Kubernetes client: the scheduler and the workers run this package's
image, one thread per worker, BLAS/OpenMP pinned to one thread, the worker's memory limit
read from its container limit, and object-storage credentials taken from a Secret (never
written into the resource). ``deploy/daskcluster.yaml`` is this function's output for the
defaults. :func:`kube_cluster` hands the same spec to ``dask_kubernetes.operator.KubeCluster``
(the optional ``[kubernetes]`` extra).

Examples
--------
>>> spec = cluster_spec("calcium-dask", n_workers=4, storage_secret="calcium-dask-storage")
>>> spec["spec"]["worker"]["replicas"]
4
>>> scheduler_address("calcium-dask", "calcium-dask")
'tcp://calcium-dask-scheduler.calcium-dask.svc.cluster.local:8786'
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from . import __version__
from .cluster import MALLOC_ENV, THREAD_ENV

if TYPE_CHECKING:  # pragma: no cover - the optional dependency
    from dask_kubernetes.operator import KubeCluster

__all__ = [
    "DEFAULT_IMAGE", "WORKER_RESOURCES", "SCHEDULER_RESOURCES", "DASK_ENV", "STORAGE_SECRET_KEYS",
    "RUN_AS_USER", "cluster_spec", "kube_cluster", "scheduler_address", "secret_env",
]

#: the image built from ``docker/Dockerfile``, tagged with the package version
DEFAULT_IMAGE = f"ghcr.io/calcium-dask/calcium-dask:{__version__}"

#: one CPU and 4 GiB per worker; requests equal limits (Guaranteed QoS: not evicted first)
WORKER_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "1", "memory": "4Gi"},
    "limits": {"cpu": "1", "memory": "4Gi"},
}
#: the scheduler's CPU and memory (requests below limits: Burstable QoS)
SCHEDULER_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}

#: Dask settings for pods (``DASK_`` variables map onto dask's configuration)
DASK_ENV: dict[str, str] = {
    # a worker on a fresh node pulls the image before it can answer
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "60s",
    # numba kernels can hold the GIL for a while: do not call the worker dead too soon
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "120s",
    # a preempted node is not a bad task: allow a few more retries than the default 3
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "5",
    # input reads go to free workers only (calcium_dask.cluster.SCHEDULER_CONFIG)
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
}

#: keys of the object-storage Secret -> optional (botocore/s3fs read these variables)
STORAGE_SECRET_KEYS: dict[str, bool] = {
    "AWS_ACCESS_KEY_ID": False,
    "AWS_SECRET_ACCESS_KEY": False,
    "AWS_SESSION_TOKEN": True,
    "AWS_ENDPOINT_URL": True,
    "AWS_DEFAULT_REGION": True,
}

#: the image's user (numeric, so that ``runAsNonRoot`` can be verified)
RUN_AS_USER = 10001

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
MEMORY_LIMIT_VAR = "DASK_WORKER_MEMORY_LIMIT"

EnvLike = Union[Mapping[str, str], Sequence[Mapping[str, Any]], None]

# a Service name is a DNS-1035 label of at most 63 characters; the operator names the
# scheduler's Service "<name>-scheduler" (and labels the worker group "<name>-default")
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 63 - len("-scheduler")


def scheduler_address(name: str = "calcium-dask", namespace: str = "default") -> str:
    """The in-cluster address of a DaskCluster's scheduler (the operator's Service).

    Parameters
    ----------
    name : str
        The DaskCluster's name.
    namespace : str
        Its namespace.

    Returns
    -------
    str
        ``tcp://<name>-scheduler.<namespace>.svc.cluster.local:8786``
    """
    return f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:{SCHEDULER_PORT}"


def secret_env(secret: str) -> list[dict[str, Any]]:
    """Environment variables that read object-storage credentials from a Secret.

    Parameters
    ----------
    secret : str
        Name of a Secret with keys from :data:`STORAGE_SECRET_KEYS`
        (``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` required, the rest optional).

    Returns
    -------
    list of dict
        Kubernetes ``EnvVar`` entries with ``valueFrom.secretKeyRef``: the values stay in
        the Secret, never in the pod spec.
    """
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}}
            for key, optional in STORAGE_SECRET_KEYS.items()]


def _env_list(env: EnvLike) -> list[dict[str, Any]]:
    """A ``{name: value}`` mapping or a list of ``EnvVar`` dicts -> a list of ``EnvVar`` dicts."""
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in env.items()]
    out = [dict(e) for e in env]
    for e in out:
        if "name" not in e or not ({"value", "valueFrom"} & set(e)):
            raise ValueError(f"an env entry needs 'name' and 'value' or 'valueFrom', got {e!r}")
    return out


def _merge_env(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concatenate env lists; a later entry replaces an earlier one of the same name, in place."""
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        for entry in group:
            merged[entry["name"]] = entry
    return list(merged.values())


def _check_resources(resources: Mapping[str, Any], what: str) -> None:
    unknown = set(resources) - {"limits", "requests"}
    if unknown:
        raise ValueError(f"{what} takes 'limits' and 'requests', not {sorted(unknown)}")
    for key, value in resources.items():
        if not isinstance(value, Mapping):
            raise ValueError(f"{what}['{key}'] must be a mapping such as {{'cpu': '1', 'memory': '4Gi'}}")


def _check_name(name: str) -> None:
    if not _NAME.match(name) or len(name) > _MAX_NAME:
        raise ValueError(f"cluster name {name!r} must be lower-case letters, digits and '-', start with a "
                         f"letter, end with a letter or digit, and be at most {_MAX_NAME} characters "
                         "(the scheduler's Service is named '<name>-scheduler')")


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _base_env() -> list[dict[str, Any]]:
    return _env_list(dict(sorted(THREAD_ENV.items()))) + _env_list(MALLOC_ENV) + _env_list(DASK_ENV)


def _has_memory_limit(resources: Mapping[str, Any]) -> bool:
    return "memory" in (resources.get("limits") or {})


def _worker_container(image: str, resources: Mapping[str, Any], env: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``dask worker`` container: one thread, memory limit from the container's limit."""
    memory: list[dict[str, Any]] = []
    limit_args = ["--memory-limit", "auto"]
    if _has_memory_limit(resources):
        memory = [{"name": MEMORY_LIMIT_VAR,
                   "valueFrom": {"resourceFieldRef": {"containerName": "worker", "resource": "limits.memory"}}}]
        limit_args = ["--memory-limit", f"$({MEMORY_LIMIT_VAR})"]
    return {
        "name": "worker",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["dask"],
        # the operator sets DASK_WORKER_NAME and DASK_SCHEDULER_ADDRESS in every worker pod
        "args": ["worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", "1", *limit_args,
                 "--dashboard-address", str(WORKER_DASHBOARD_PORT)],
        "env": _merge_env(memory, env),
        "ports": [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT, "protocol": "TCP"}],
        "resources": copy.deepcopy(dict(resources)),
        "securityContext": _container_security(),
    }


def _health_probe(*, initial_delay: int, period: int) -> dict[str, Any]:
    """An HTTP probe of the scheduler's ``/health`` endpoint (served on the dashboard port)."""
    return {"httpGet": {"path": "/health", "port": "http-dashboard"},
            "initialDelaySeconds": initial_delay, "periodSeconds": period}


def _scheduler_container(image: str, resources: Mapping[str, Any], env: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``dask scheduler`` container with its comm and dashboard ports and health probes."""
    return {
        "name": "scheduler",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["dask"],
        "args": ["scheduler", "--host", "0.0.0.0", "--port", str(SCHEDULER_PORT),
                 "--dashboard-address", f":{DASHBOARD_PORT}"],
        "env": env,
        "ports": [{"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
                  {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"}],
        "readinessProbe": _health_probe(initial_delay=5, period=10),
        "livenessProbe": _health_probe(initial_delay=15, period=20),
        "resources": copy.deepcopy(dict(resources)),
        "securityContext": _container_security(),
    }


def _scheduler_service(name: str) -> dict[str, Any]:
    """The scheduler's Service; the operator looks its ports up by these names."""
    return {
        "type": "ClusterIP",
        "selector": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
        "ports": [
            {"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
            {"name": "http-dashboard", "protocol": "TCP", "port": DASHBOARD_PORT, "targetPort": "http-dashboard"},
        ],
    }


def cluster_spec(name: str = "calcium-dask", *, image: str = DEFAULT_IMAGE, n_workers: int = 2,
                 resources: Mapping[str, Any] | None = None,
                 scheduler_resources: Mapping[str, Any] | None = None, env: EnvLike = None,
                 namespace: str | None = None, storage_secret: str | None = None,
                 idle_timeout: int = 0) -> dict[str, Any]:
    """The ``DaskCluster`` resource (``kubernetes.dask.org/v1``) for calcium-dask, as a dict.

    Parameters
    ----------
    name : str
        Cluster name; the scheduler is reachable at :func:`scheduler_address` ``(name, namespace)``.
    image : str
        Image for the scheduler and the workers (built from ``docker/Dockerfile``).
    n_workers : int
        Workers of the default worker group (one thread each).
    resources : dict, optional
        Worker ``{"requests": {...}, "limits": {...}}``; default :data:`WORKER_RESOURCES`
        (1 CPU, 4 GiB). With a memory limit, dask's ``--memory-limit`` follows it.
    scheduler_resources : dict, optional
        Default :data:`SCHEDULER_RESOURCES`.
    env : dict or list of dict, optional
        Extra environment for the scheduler and the workers (``{"NAME": "value"}`` or
        Kubernetes ``EnvVar`` dicts); replaces defaults of the same name.
    namespace : str, optional
        Written into the resource's metadata when given.
    storage_secret : str, optional
        Name of a Secret holding object-storage credentials (:data:`STORAGE_SECRET_KEYS`);
        the workers read them as ``secretKeyRef`` environment variables.
    idle_timeout : int
        Seconds of scheduler idleness after which the operator deletes the cluster (0: never).

    Returns
    -------
    dict
        Ready for ``kubectl apply`` (as YAML) or ``KubeCluster(custom_cluster_spec=...)``.

    Raises
    ------
    ValueError
        For a name Kubernetes would reject, a negative worker count or malformed resources.
    """
    _check_name(name)
    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 0:
        raise ValueError(f"n_workers must be a non-negative integer, got {n_workers!r}")
    if not isinstance(idle_timeout, int) or idle_timeout < 0:
        raise ValueError(f"idle_timeout must be a non-negative integer (seconds), got {idle_timeout!r}")
    worker_res = WORKER_RESOURCES if resources is None else resources
    scheduler_res = SCHEDULER_RESOURCES if scheduler_resources is None else scheduler_resources
    _check_resources(worker_res, "resources")
    _check_resources(scheduler_res, "scheduler_resources")
    extra = _env_list(env)
    storage = secret_env(storage_secret) if storage_secret else []
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "calcium-dask",
                                                         "app.kubernetes.io/component": "dask-cluster"}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": metadata,
        "spec": {
            "idleTimeout": idle_timeout,
            "scheduler": {
                "spec": {"securityContext": _pod_security(),
                         "containers": [_scheduler_container(image, scheduler_res, _merge_env(_base_env(), extra))]},
                "service": _scheduler_service(name),
            },
            "worker": {
                "replicas": n_workers,
                "spec": {"securityContext": _pod_security(),
                         "containers": [_worker_container(image, worker_res,
                                                          _merge_env(_base_env(), storage, extra))]},
            },
        },
    }


def _kubecluster_class() -> type:
    """``dask_kubernetes.operator.KubeCluster``, or an ImportError naming the extra to install."""
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError as e:
        raise ImportError(
            "kube_cluster needs the optional dask-kubernetes package: "
            "pip install 'calcium-dask[kubernetes]' (or connect to a running scheduler with "
            f"calcium_dask.connect('tcp://host:8786')); the import failed with: {e}") from e
    return KubeCluster


def kube_cluster(name: str = "calcium-dask", *, image: str = DEFAULT_IMAGE, n_workers: int = 2,
                 resources: Mapping[str, Any] | None = None, env: EnvLike = None,
                 namespace: str | None = None, storage_secret: str | None = None,
                 **kwargs: Any) -> KubeCluster:
    """Start (or connect to) a Dask cluster on Kubernetes through the dask-kubernetes operator.

    Parameters
    ----------
    name, image, n_workers, resources, env, namespace, storage_secret
        As in :func:`cluster_spec`, which builds the ``DaskCluster`` resource.
    **kwargs
        Passed to ``KubeCluster`` (e.g. ``shutdown_on_close``, ``resource_timeout``, ``quiet``).

    Returns
    -------
    dask_kubernetes.operator.KubeCluster
        Use it with ``distributed.Client(cluster)``; ``cluster.adapt(minimum, maximum)`` scales it.

    Raises
    ------
    ImportError
        Without the ``[kubernetes]`` extra (``dask-kubernetes``).
    """
    cls = _kubecluster_class()
    spec = cluster_spec(name, image=image, n_workers=n_workers, resources=resources, env=env,
                        namespace=namespace, storage_secret=storage_secret)
    return cls(custom_cluster_spec=spec, namespace=namespace, **kwargs)
