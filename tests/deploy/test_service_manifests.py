"""deploy/service/: the analysis service on Kubernetes, validated offline and checked against the CLI."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from calcium_dask.kube import DEFAULT_IMAGE, RUN_AS_USER, scheduler_address

from .conftest import DEPLOY, K8S_VERSION, REPO, containers

kubernetes_validate = pytest.importorskip("kubernetes_validate")

SERVICE_DIR = DEPLOY / "service"
NAMESPACE = "calcium-dask"


def _docs() -> list[dict[str, Any]]:
    return [d for p in sorted(SERVICE_DIR.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _one(kind: str) -> dict[str, Any]:
    found = [d for d in _docs() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def _container() -> dict[str, Any]:
    (c,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def _serve_args() -> dict[str, Any]:
    from calcium_dask.service.commands import serve_command

    args = _container()["args"]
    assert args[0] == "serve"
    return serve_command.make_context("serve", list(args[1:])).params


def test_the_service_is_a_deployment_a_service_a_volume_and_a_secret():
    assert sorted(d["kind"] for d in _docs()) == ["Deployment", "PersistentVolumeClaim", "Secret", "Service"]
    assert all(d["metadata"]["namespace"] == NAMESPACE for d in _docs())


@pytest.mark.parametrize("kind", ["Deployment", "Service", "PersistentVolumeClaim", "Secret"])
def test_each_validates_strictly_against_kubernetes(kind):
    assert kubernetes_validate.validate(_one(kind), K8S_VERSION, strict=True) == K8S_VERSION.rsplit(".", 1)[0]


def test_strict_validation_catches_a_misspelt_field():
    bad = _one("Deployment")
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_its_arguments_are_what_calcium_dask_serve_accepts():
    p = _serve_args()
    mounts = {m["name"]: m["mountPath"] for m in _container()["volumeMounts"]}
    assert p["host"] == "0.0.0.0" and p["port"] == 8000  # the pod's address; the Service exposes it
    assert p["state_dir"] == mounts["state"]
    assert PurePosixPath(p["token_file"]).parent == PurePosixPath(mounts["tokens"])
    assert p["scheduler"] == scheduler_address("calcium-dask", NAMESPACE)
    assert p["roots"] and all(re.match(r"^[a-z0-9]+://", r) for r in p["roots"])
    assert p["max_concurrent"] >= 1


def test_one_pod_owns_the_state_folder_and_takes_over_from_the_last():
    spec = _one("Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == _one("PersistentVolumeClaim")["metadata"]["name"]
    assert _one("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_the_service_reaches_the_pods_port_and_the_probes_ask_healthz():
    svc, dep = _one("Service"), _one("Deployment")
    assert svc["spec"]["type"] == "ClusterIP"  # inside the cluster only
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"] and ports["http"] == _serve_args()["port"]
    assert _container()["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_secrets_come_from_the_secret_and_it_holds_only_placeholders():
    secret = _one("Secret")
    assert "data" not in secret and set(secret["stringData"]) == {"tokens", "database-url"}
    assert all(re.fullmatch(r"<[^<>]+>", v) for v in secret["stringData"].values())
    env = {e["name"]: e for e in _container()["env"]}
    assert env["CALCIUM_DASK_DB"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"], "key": "database-url", "optional": True}
    tokens = {v["name"]: v for v in _one("Deployment")["spec"]["template"]["spec"]["volumes"]}["tokens"]["secret"]
    assert tokens["secretName"] == secret["metadata"]["name"] and tokens["items"] == [{"key": "tokens",
                                                                                        "path": "tokens"}]
    assert tokens["defaultMode"] & 0o040  # the group (fsGroup) reads it: the service is not root
    for name, e in env.items():
        if re.search(r"KEY|SECRET|TOKEN|PASSWORD|DB", name):
            assert "value" not in e and "secretKeyRef" in e["valueFrom"], name


def test_the_pod_runs_the_package_image_unprivileged_with_one_thread_pools():
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == RUN_AS_USER
    for c in containers(_one("Deployment")):
        assert c["image"] == DEFAULT_IMAGE
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"


def test_the_image_can_run_the_service():
    text = (REPO / "docker" / "Dockerfile").read_text()
    installs = re.findall(r"uv pip install [^&]*", re.sub(r"\\\n", " ", text))
    assert installs and all("service" in i for i in installs)
    assert re.search(r"^EXPOSE 8000$", text, flags=re.M)


def test_the_guide_names_the_files():
    guide = (DEPLOY / "README.md").read_text()
    for p in SERVICE_DIR.glob("*.yaml"):
        assert f"deploy/service/{p.name}" in guide, p.name
