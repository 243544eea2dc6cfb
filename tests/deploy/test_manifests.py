"""The Kubernetes manifests in deploy/: valid offline, consistent with each other, free of secrets."""

from __future__ import annotations

import copy
import re
from pathlib import PurePosixPath
from typing import Any

import click
import jsonschema
import pytest
import yaml

from calcium_dask import __version__
from calcium_dask.kube import DEFAULT_IMAGE, RUN_AS_USER, STORAGE_SECRET_KEYS, scheduler_address

from .conftest import (CR_SCHEMAS, DEPLOY, K8S_VERSION, SCHEMAS, all_documents, containers, only,
                       schema)


STANDARD_KINDS = ("Job", "Secret", "ConfigMap")
NAMESPACE = "calcium-dask"


@pytest.fixture(scope="module")
def kubernetes_validate():
    """Kubernetes' own schemas (kubernetes-validate): only the tests that need them skip
    without it."""
    return pytest.importorskip("kubernetes_validate")


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(kind), format_checker=jsonschema.FormatChecker())


def _errors(kind: str, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(kind).iter_errors(doc)]


# -- every file --------------------------------------------------------------------------

def test_deploy_holds_one_of_each_resource(manifests):
    kinds = sorted(doc["kind"] for docs in manifests.values() for doc in docs)
    assert kinds == sorted(["DaskCluster", "DaskAutoscaler", "Job", "Secret", "ConfigMap"])


def test_every_resource_lives_in_one_namespace():
    for name, doc in all_documents():
        assert doc["metadata"].get("namespace") == NAMESPACE, name


# -- standard objects: Kubernetes' own schemas, strict -------------------------------------

@pytest.mark.parametrize("kind", STANDARD_KINDS)
def test_standard_objects_validate_strictly(kind, kubernetes_validate):
    version = kubernetes_validate.validate(only(kind), K8S_VERSION, strict=True)
    assert version == K8S_VERSION.rsplit(".", 1)[0]


def test_strict_validation_catches_a_misspelt_field(kubernetes_validate):
    job = copy.deepcopy(only("Job"))
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolcy"):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


# -- custom resources: our schemas, derived from the operator's CRD -------------------------

@pytest.mark.parametrize("file", sorted(CR_SCHEMAS.values()))
def test_schemas_are_valid_json_schema(file):
    import json

    jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMAS / file).read_text()))


@pytest.mark.parametrize("kind", sorted(CR_SCHEMAS))
def test_custom_resources_match_their_schema(kind):
    assert _errors(kind, only(kind)) == []


@pytest.mark.parametrize("part", ["scheduler", "worker"])
def test_operator_pod_specs_are_valid_kubernetes_pod_specs(part, kubernetes_validate):
    """The operator turns these specs into Pods as they are: check them with Kubernetes' schema."""
    spec = only("DaskCluster")["spec"][part]["spec"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"calcium-dask-{part}"}, "spec": spec}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_scheduler_service_is_a_valid_kubernetes_service_spec(kubernetes_validate):
    spec = only("DaskCluster")["spec"]["scheduler"]["service"]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "calcium-dask-scheduler"}, "spec": spec}
    kubernetes_validate.validate(svc, K8S_VERSION, strict=True)


def _mutate(doc: dict, path: str, value: Any) -> dict:
    """A copy of ``doc`` with ``path`` (``a.b.0.c``) set to ``value`` (``...`` deletes it)."""
    out = copy.deepcopy(doc)
    *parents, leaf = path.split(".")
    node: Any = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    key: Any = int(leaf) if isinstance(node, list) else leaf
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return out


WORKER = "spec.worker.spec.containers.0"
MISTAKES = {
    "wrong apiVersion": ("apiVersion", "kubernetes.dask.org/v1beta1"),
    "misspelt container field": (f"{WORKER}.imagePullPolcy", "Always"),
    "unknown spec field": ("spec.workers", {}),
    "scheduler without service": ("spec.scheduler.service", ...),
    "worker without pod spec": ("spec.worker.spec", ...),
    "no containers": ("spec.worker.spec.containers", []),
    "negative replicas": ("spec.worker.replicas", -1),
    "replicas as text": ("spec.worker.replicas", "2"),
    "floating image tag": (f"{WORKER}.image", "ghcr.io/calcium-dask/calcium-dask:latest"),
    "untagged image": (f"{WORKER}.image", "ghcr.io/calcium-dask/calcium-dask"),
    "bad memory quantity": (f"{WORKER}.resources.limits.memory", "4 GB"),
    "env value and valueFrom": (f"{WORKER}.env.1", {"name": "X", "value": "1",
                                                   "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    "numeric env value": (f"{WORKER}.env.1", {"name": "OMP_NUM_THREADS", "value": 1}),
    "upper-case name": ("metadata.name", "Calcium"),
    "name too long for the scheduler Service": ("metadata.name", "c" * 54),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_daskcluster_schema_rejects_mistakes(mistake):
    path, value = MISTAKES[mistake]
    assert _errors("DaskCluster", _mutate(only("DaskCluster"), path, value)), mistake


def test_autoscaler_scales_the_cluster_within_sane_bounds():
    spec = only("DaskAutoscaler")["spec"]
    cluster = only("DaskCluster")
    assert spec["cluster"] == cluster["metadata"]["name"]
    assert 0 <= spec["minimum"] <= cluster["spec"]["worker"]["replicas"] <= spec["maximum"]
    assert _errors("DaskAutoscaler", _mutate(only("DaskAutoscaler"), "spec.maximum", ...))


def test_operator_finds_the_scheduler_ports_by_name():
    """The operator resolves the scheduler's address through the ports named tcp-comm and http-dashboard."""
    scheduler = only("DaskCluster")["spec"]["scheduler"]
    service_ports = {p["name"]: p for p in scheduler["service"]["ports"]}
    container_ports = {p["name"]: p["containerPort"] for p in scheduler["spec"]["containers"][0]["ports"]}
    assert service_ports["tcp-comm"]["port"] == 8786 and service_ports["http-dashboard"]["port"] == 8787
    for name, port in service_ports.items():
        assert port["targetPort"] in container_ports, name
    assert scheduler["service"]["selector"]["dask.org/cluster-name"] == only("DaskCluster")["metadata"]["name"]


# -- the containers -------------------------------------------------------------------------

def test_every_container_runs_the_same_pinned_image():
    images = {c["image"] for _, doc in all_documents() for c in containers(doc)}
    assert images == {DEFAULT_IMAGE}
    assert DEFAULT_IMAGE.rsplit(":", 1)[1] == __version__


def _cli_params(command: Any, args: list[str]) -> dict[str, Any]:
    ctx = command.make_context(command.name or "cmd", list(args), resilient_parsing=False)
    return ctx.params


def test_dask_containers_parse_with_the_real_dask_cli():
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    spec = only("DaskCluster")["spec"]
    scheduler = spec["scheduler"]["spec"]["containers"][0]
    worker = spec["worker"]["spec"]["containers"][0]
    assert scheduler["command"] == worker["command"] == ["dask"]  # overrides the image's entrypoint
    assert scheduler["args"][0] == "scheduler" and worker["args"][0] == "worker"
    s = _cli_params(scheduler_cli, scheduler["args"][1:])
    assert str(s["port"]) == "8786"
    w = _cli_params(worker_cli, worker["args"][1:])
    assert w["nthreads"] == 1  # one thread per worker: the kernels are single-threaded
    assert w["memory_limit"] == "$(DASK_WORKER_MEMORY_LIMIT)"
    env = {e["name"]: e for e in worker["env"]}
    assert env["DASK_WORKER_MEMORY_LIMIT"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": worker["name"], "resource": "limits.memory"}


def test_containers_pin_native_thread_pools_to_one():
    for _, doc in all_documents():
        for c in containers(doc):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env.get("OMP_NUM_THREADS") == "1" and env.get("MKL_NUM_THREADS") == "1", c["name"]
            assert any(k.startswith("DASK_DISTRIBUTED__") for k in env), c["name"]


def test_workers_reuse_freed_memory_as_local_workers_do():
    from calcium_dask.cluster import MALLOC_ENV

    workers = [c for _, doc in all_documents() for c in containers(doc) if c["name"] == "worker"]
    assert workers
    for c in workers:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert {k: env.get(k) for k in MALLOC_ENV} == MALLOC_ENV


def test_workers_get_one_cpu_and_4_gib():
    worker = only("DaskCluster")["spec"]["worker"]["spec"]["containers"][0]
    assert worker["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}
    assert worker["resources"]["requests"] == worker["resources"]["limits"]


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    cluster, job = only("DaskCluster"), only("Job")
    return [("scheduler", cluster["spec"]["scheduler"]["spec"]), ("worker", cluster["spec"]["worker"]["spec"]),
            ("job", job["spec"]["template"]["spec"])]


@pytest.mark.parametrize("which", ["scheduler", "worker", "job"])
def test_pods_run_as_the_image_user_without_privileges(which):
    pod = dict(_pod_specs())[which]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == RUN_AS_USER != 0
    for c in pod["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


# -- credentials ----------------------------------------------------------------------------

_KEY_ID = re.compile(r"(?<![A-Z0-9])(AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])")
_LONG_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SENSITIVE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


@pytest.mark.parametrize("path", sorted(p.name for p in DEPLOY.glob("*.yaml")))
def test_no_manifest_contains_a_literal_credential(path):
    text = (DEPLOY / path).read_text()
    assert not _KEY_ID.search(text), "an access key id"
    assert not _LONG_SECRET.search(text), "something shaped like a secret access key"
    for doc in yaml.safe_load_all(text):
        for c in containers(doc or {}):
            for e in c.get("env", []):
                if _SENSITIVE.search(e["name"]):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], (path, e["name"])


def test_secret_example_holds_only_placeholders():
    secret = only("Secret")
    assert "data" not in secret, "base64 data is a real value: use stringData placeholders"
    for key, value in secret["stringData"].items():
        assert re.fullmatch(r"<[^<>]+>", value), f"{key} is not a <placeholder>"


def test_pods_read_credentials_the_secret_provides():
    secret = only("Secret")
    keys = set(secret["stringData"])
    assert keys <= set(STORAGE_SECRET_KEYS)
    required = {k for k, optional in STORAGE_SECRET_KEYS.items() if not optional}
    assert required <= keys
    refs = [e["valueFrom"]["secretKeyRef"] for _, doc in all_documents() for c in containers(doc)
            for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs, "the workers and the Job need the object-storage credentials"
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in keys or ref.get("optional") is True, ref
    scheduler = only("DaskCluster")["spec"]["scheduler"]["spec"]["containers"][0]
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in scheduler["env"]), \
        "the scheduler never touches the data: it gets no credentials"


# -- the batch Job and its manifest -----------------------------------------------------------

def _job_container() -> dict[str, Any]:
    return only("Job")["spec"]["template"]["spec"]["containers"][0]


def _manifest_mount() -> tuple[str, str]:
    """(path of the manifest inside the Job's container, ConfigMap key it comes from)."""
    pod = only("Job")["spec"]["template"]["spec"]
    configmap = only("ConfigMap")
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    mount = next(m for m in _job_container()["volumeMounts"] if m["name"] == volume["name"])
    assert mount.get("readOnly") is True
    item = volume["configMap"]["items"][0]
    assert item["key"] in configmap["data"]
    return str(PurePosixPath(mount["mountPath"]) / item["path"]), item["key"]


def test_job_runs_batch_on_the_manifest_the_configmap_mounts():
    args = _job_container()["args"]
    path, _ = _manifest_mount()
    assert "command" not in _job_container(), "the image's entrypoint (calcium-dask) runs the Job"
    assert args[0] == "batch" and args[1] == path


def test_job_connects_to_the_clusters_scheduler_service():
    args = _job_container()["args"]
    address = args[args.index("--scheduler") + 1]
    cluster = only("DaskCluster")
    assert address == scheduler_address(cluster["metadata"]["name"], cluster["metadata"]["namespace"])


def test_job_retries_a_bounded_number_of_times():
    job = only("Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert 0 <= job["spec"]["backoffLimit"] <= 6


def test_job_args_parse_with_the_cli(tmp_path):
    from calcium_dask.cli import cli

    _, key = _manifest_mount()
    local = tmp_path / "manifest.yaml"
    local.write_text(only("ConfigMap")["data"][key])
    args = _job_container()["args"]
    parsed = _cli_params(cli.commands["batch"], [str(local), *args[2:]])
    # every option the Job passes reaches the command with the value it means
    assert parsed["manifest"] == str(local)
    assert parsed["scheduler"] == args[args.index("--scheduler") + 1]
    given = {a.lstrip("-").replace("-", "_") for a in args[2:] if a.startswith("--")}
    assert given <= set(parsed), given - set(parsed)
    with pytest.raises(click.exceptions.NoSuchOption):  # and a misspelt option would not pass
        _cli_params(cli.commands["batch"], [str(local), "--schedular", "tcp://x:8786"])


def _batch_manifest() -> dict[str, Any]:
    _, key = _manifest_mount()
    return yaml.safe_load(only("ConfigMap")["data"][key])


def test_batch_manifest_example_is_valid():
    from calcium_dask.params import Params
    from calcium_dask.pipeline import STAGES

    manifest = _batch_manifest()
    params = Params.from_caiman(manifest.get("params") or {})
    sessions = manifest["sessions"]
    assert sessions and len({s["name"] for s in sessions}) == len(sessions)
    assert len({s["output"] for s in sessions}) == len(sessions), "each session needs its own store"
    for s in sessions:
        assert set(s) <= {"name", "input", "output", "overrides", "until", "storage_options"}, s["name"]
        assert re.match(r"^[a-z0-9]+://", s["input"]) and re.match(r"^[a-z0-9]+://", s["output"])
        params.replace(**(s.get("overrides") or {}))
        assert s.get("until", "motion") in STAGES
    assert not any(_SENSITIVE.search(k) for k in (manifest.get("storage_options") or {}))


def test_readme_applies_files_that_exist():
    text = (DEPLOY / "README.md").read_text()
    named = set(re.findall(r"deploy/([\w.-]+\.yaml)", text))
    assert {"daskcluster.yaml", "job.yaml", "configmap-manifest.yaml"} <= named
    for name in named - {"secret.yaml"}:  # secret.yaml: the user's own copy of the example
        assert (DEPLOY / name).is_file(), name
