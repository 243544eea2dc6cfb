"""Object storage end to end: movies and results stores on S3 (moto's server on loopback, real s3fs).

The server speaks the S3 HTTP API on 127.0.0.1; the package reaches it through s3fs exactly
as it would reach AWS or MinIO, with credentials given as storage options or taken from the
environment. The credentials are fake and are never written into a results store.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calcium_dask import open_movie
from calcium_dask.store import ResultsStore

from ..test_store import _views_agree

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "calcium-test"
KEY_ID = "CALCIUMDASKTESTKEYID1"  # fake: moto accepts any credentials
SECRET = "calcium-dask-test-secret-7f3a9c"  # fake, and distinctive so that a leak is found
ENV_SECRET = "calcium-dask-env-secret-51b2e8"  # what the environment holds (also fake)
T, H, W = 60, 48, 40


@dataclass(frozen=True)
class S3:
    """The running server: its endpoint and the storage options that reach it."""

    endpoint: str

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"key": KEY_ID, "secret": SECRET, "client_kwargs": {"endpoint_url": self.endpoint}}

    def cli_options(self) -> list[str]:
        return ["--storage-option", f"key={KEY_ID}", "--storage-option", f"secret={SECRET}",
                "--storage-option", f"client_kwargs.endpoint_url={self.endpoint}"]

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)


_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3:
    """moto's S3 server on a free loopback port, fake credentials in the environment, one bucket."""
    import boto3

    with pytest.MonkeyPatch.context() as mp:
        for var in _AWS_ENV:
            mp.delenv(var, raising=False)
        home = tmp_path_factory.mktemp("aws")
        mp.setenv("AWS_ACCESS_KEY_ID", "CALCIUMDASKENVKEYID01")
        mp.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))  # never the user's ~/.aws
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            yield S3(endpoint)
        finally:
            server.stop()


def _zarr_copy(tiff: Path, out: Path) -> Path:
    """The TIFF's frames as a zarr v3 array chunked in time and space, with fr and dxy."""
    import tifffile
    import zarr

    frames = tifffile.imread(tiff)
    arr = zarr.create_array(str(out), shape=frames.shape, chunks=(20, 32, 32), dtype=frames.dtype,
                            dimension_names=("frame", "y", "x"), attributes={"fr": 30.0, "dxy": [1.0, 1.0]})
    arr[:] = frames
    return out


@pytest.fixture(scope="module")
def local_movies(tmp_path_factory) -> dict[str, Path]:
    """A small simulated movie as TIFF, the same frames as zarr, and the simulator's own zarr."""
    from calcium_dask.datasets import SimulationParams, write_movie

    sp = SimulationParams.preset("small", T=T, H=H, W=W, K=5, seed=3)
    base = tmp_path_factory.mktemp("s3_movies")
    tiff = write_movie(base / "tiff" / "movie.tif", sp, workers=1)
    return {"tiff": tiff, "zarr": _zarr_copy(tiff, base / "movie.zarr"),
            "simulated_zarr": write_movie(base / "zarr" / "movie.zarr", sp, chunk_frames=20, workers=1)}


@pytest.fixture(scope="module")
def uploaded(s3, local_movies) -> dict[str, str]:
    """The movies in the bucket -> their s3:// URLs (``parts``: the TIFF split in two files)."""
    import tifffile

    fs = s3.fs()
    fs.put(str(local_movies["tiff"]), f"{BUCKET}/movie.tif")
    frames = tifffile.imread(local_movies["tiff"])
    for i, part in enumerate(np.array_split(frames, 2)):
        buf = io.BytesIO()
        tifffile.imwrite(buf, part, photometric="minisblack")
        fs.pipe(f"{BUCKET}/session/part-{i}.tif", buf.getvalue())
    fs.put(str(local_movies["zarr"]), f"{BUCKET}/movie.zarr", recursive=True)
    fs.put(str(local_movies["simulated_zarr"]), f"{BUCKET}/simulated.zarr", recursive=True)
    fs.invalidate_cache()
    assert fs.exists(f"{BUCKET}/movie.zarr/zarr.json") and fs.exists(f"{BUCKET}/movie.zarr/c/2/1/1")
    return {"tiff": f"s3://{BUCKET}/movie.tif", "zarr": f"s3://{BUCKET}/movie.zarr",
            "simulated_zarr": f"s3://{BUCKET}/simulated.zarr", "parts": f"s3://{BUCKET}/session/*.tif"}


@pytest.fixture(scope="module")
def threads_cluster():
    """A threads-only local cluster (one worker, two threads), reached through its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc:
        yield lc.scheduler_address


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_movie_in_the_bucket_equals_the_local_file(s3, local_movies, uploaded, fmt):
    remote = open_movie(uploaded[fmt], storage_options=s3.storage_options)
    local = open_movie(local_movies[fmt])
    assert remote.attrs["engine"] == local.attrs["engine"] == fmt
    assert remote.attrs["source"] == uploaded[fmt]
    assert remote.shape == (T, H, W) and remote.dtype == local.dtype
    assert remote.attrs["fr"] == local.attrs["fr"]
    np.testing.assert_array_equal(remote.values, local.values)
    np.testing.assert_array_equal(remote[T // 2 :: 7, 5:17, 3:30].values, local[T // 2 :: 7, 5:17, 3:30].values)


def test_glob_of_tiff_files_in_the_bucket_is_one_movie(s3, local_movies, uploaded):
    """A session stored as several TIFF files, as batch manifests name them (``.../*.tif``)."""
    remote = open_movie(uploaded["parts"], storage_options=s3.storage_options)
    assert remote.attrs["source"] == [f"s3://{BUCKET}/session/part-0.tif", f"s3://{BUCKET}/session/part-1.tif"]
    np.testing.assert_array_equal(remote.values, open_movie(local_movies["tiff"]).values)


def test_cli_info_reads_the_bucket(s3, uploaded, capsys):
    _run_cli(["info", uploaded["zarr"], *s3.cli_options()])
    out = capsys.readouterr().out
    assert f"{T} frames x {H} x {W} pixels" in out and "zarr" in out


def test_simulated_zarr_in_the_bucket_opens(s3, local_movies, uploaded):
    remote = open_movie(uploaded["simulated_zarr"], storage_options=s3.storage_options)
    np.testing.assert_array_equal(remote.values, open_movie(local_movies["tiff"]).values)


def test_credentials_and_endpoint_from_the_environment(s3, local_movies, uploaded, monkeypatch):
    """How pods get them (a Secret as env vars): no storage options at all."""
    import dask

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    remote = open_movie(uploaded["zarr"])
    with dask.config.set(scheduler="threads"):  # this process's environment, not a cluster's workers
        np.testing.assert_array_equal(remote.values, open_movie(local_movies["zarr"]).values)


def _run_cli(args: list[str]) -> None:
    from calcium_dask.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0


@pytest.fixture(scope="module")
def motion_store(s3, uploaded, threads_cluster, tmp_path_factory) -> ResultsStore:
    """``calcium-dask run s3://... --out s3://... --until motion`` through the real CLI."""
    out = f"s3://{BUCKET}/results.zarr"
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)  # a store mistaken for a local path would appear here
        _run_cli(["run", uploaded["tiff"], "--out", out, "--until", "motion", *s3.cli_options(),
                  "--scheduler", threads_cluster, "--quiet",
                  "--set", "motion.pw_rigid=false", "--set", "compute.chunk_frames=20"])
    assert list(cwd.iterdir()) == []
    return ResultsStore(out, s3.storage_options)


def test_cli_run_writes_the_results_store_into_the_bucket(s3, motion_store):
    fs = s3.fs()
    fs.invalidate_cache()
    assert fs.exists(f"{BUCKET}/results.zarr/zarr.json")
    assert set(motion_store.stages()) == {"motion"}
    motion = motion_store.read("motion")
    assert motion["shifts"].shape == (T, 2) and motion["shifts"].dims == ("frame", "axis")
    assert motion["template"].shape == (H, W)
    assert np.all(np.isfinite(motion["shifts"].values))
    corrected = motion_store.movie()
    assert corrected.shape == (T, H, W) and corrected.dtype == np.float32
    assert np.isfinite(corrected[:5].values).all()
    assert motion_store.read("summary")["mean"].shape == (H, W)


def test_rerun_resumes_from_the_store_in_the_bucket(s3, uploaded, motion_store, threads_cluster):
    before = motion_store.stages()["motion"]["finished"]
    _run_cli(["run", uploaded["tiff"], "--out", motion_store.url, "--until", "motion", *s3.cli_options(),
              "--scheduler", threads_cluster, "--quiet",
              "--set", "motion.pw_rigid=false", "--set", "compute.chunk_frames=20"])
    assert motion_store.stages()["motion"]["finished"] == before  # done before: not recomputed


def _all_attrs(store: ResultsStore) -> dict[str, Any]:
    """Attributes of the root and of every group and array below it."""
    root = store.root(mode="r")
    out = {"/": dict(root.attrs)}
    for path, node in root.members(max_depth=None):
        out[path] = dict(node.attrs)
    return out


def test_credentials_never_reach_the_store(s3, motion_store):
    attrs = _all_attrs(motion_store)
    assert "stages" in attrs["/"] and "params" in attrs["/"]
    text = json.dumps(attrs, default=str)
    for secret in (SECRET, KEY_ID, ENV_SECRET):
        assert secret not in text
    fs = s3.fs()
    metadata = [p for p in fs.find(f"{BUCKET}/results.zarr") if p.rsplit("/", 1)[-1] in
                ("zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata")]
    assert metadata
    for path in metadata:
        raw = fs.cat(path).decode()
        assert SECRET not in raw and KEY_ID not in raw and ENV_SECRET not in raw, path


@pytest.fixture(scope="module")
def full_store(s3, uploaded, threads_cluster, tmp_path_factory) -> ResultsStore:
    """Every stage (motion, CNMF, evaluation) of the demo parameters, input and results in the bucket."""
    import yaml

    from calcium_dask.cli import demo_params

    params = tmp_path_factory.mktemp("params") / "demo.yaml"
    params.write_text(yaml.safe_dump(demo_params(30.0).to_dict()))
    out = f"s3://{BUCKET}/full.zarr"
    _run_cli(["run", uploaded["tiff"], "--out", out, "--params", str(params), *s3.cli_options(),
              "--scheduler", threads_cluster, "--quiet"])
    return ResultsStore(out, s3.storage_options)


def test_full_run_writes_the_estimates_into_the_bucket(full_store):
    root = full_store.read()
    n = root.sizes["unit"]
    assert root["footprints"].shape == (n, H, W) and root["traces"].shape == (n, T)
    assert full_store.read("motion")["shifts"].shape == (T, 2)
    # opened as DESIGN.md says, on the consolidated metadata: one request, no warning
    _views_agree(full_store.url, [None, "motion", "summary", "movie"], full_store.storage_options)


def test_full_run_keeps_the_root_attributes(full_store):
    attrs = dict(full_store.root(mode="r").attrs)
    assert set(full_store.stages()) == {"motion", "cnmf", "evaluate"}
    assert {"params", "version", "input", "input_checksum"} <= set(attrs)


def test_full_run_leaks_no_credentials(s3, full_store):
    text = json.dumps(_all_attrs(full_store), default=str)
    for secret in (SECRET, KEY_ID, ENV_SECRET):
        assert secret not in text
    fs = s3.fs()
    for path in fs.find(f"{BUCKET}/full.zarr"):
        if path.rsplit("/", 1)[-1] in ("zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"):
            raw = fs.cat(path).decode()
            assert SECRET not in raw and KEY_ID not in raw and ENV_SECRET not in raw, path
