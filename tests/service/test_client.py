"""The notebook client and the ``submit | status | watch | cancel`` commands, against a live service."""

from __future__ import annotations

import json

import pytest
import yaml

from calcium_dask.cli import main
from calcium_dask.params import Params
from calcium_dask.service import Client, RunFailed, ServiceRequestError

from .conftest import live_server, make_harness
from .pg import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory, movie, client):
    """A live service (uvicorn in a thread) computing on the session's cluster; (harness, url)."""
    from calcium_dask.service.db import Database

    tmp = tmp_path_factory.mktemp("client")
    db = Database(f"sqlite:///{tmp / 'service.db'}")
    db.upgrade()
    h = make_harness(db, tmp, movie, client=client)
    with live_server(h.service) as url:
        yield h, url
    db.close()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_a_notebook_submits_waits_and_reads_the_results(service):
    h, url = service
    with Client(url, h.token) as svc:
        run = svc.submit(h.movie, h.results / "nb.zarr", Params.from_caiman({"fr": 30, "K": 4}), name="notebook")
        assert run.state in ("queued", "running") and run.name == "notebook"
        done = svc.wait(run.id, progress=False, poll=0.2)
        assert done.state == "done" and done.progress == 1 and done.units > 0
        res = svc.results(run.id)
        assert res.A.shape[1] == done.units == res.C.shape[0]
        assert run.id in [r.id for r in svc.runs(state="done")]
        assert "[event] done" in svc.log(run.id)
        with pytest.raises(ServiceRequestError, match=r"already done \(HTTP 409\)") as e:
            svc.cancel(run.id)
        assert e.value.status == 409
        with pytest.raises(ServiceRequestError, match=r"outside the allowed roots .*\(HTTP 403\)"):
            svc.submit("/etc/passwd", h.results / "x.zarr")


def test_wait_raises_for_a_failed_run_with_its_message(service, tmp_path):
    h, url = service
    bad = h.results / "not-a-movie.tif"
    bad.write_text("this is text")
    with Client(url, h.token) as svc:
        run = svc.submit(bad, h.results / "bad.zarr")
        with pytest.raises(RunFailed, match=r"failed: .*not-a-movie.tif") as e:
            svc.wait(run.id, progress=False, poll=0.2)
        assert e.value.run.state == "failed"


def test_a_manifest_file_with_relative_paths_is_submitted_as_a_batch(service, tmp_path):
    h, url = service
    folder = h.results / "batch"
    folder.mkdir()
    manifest = folder / "sessions.yaml"
    manifest.write_text(yaml.safe_dump({"params": {"fr": 30}, "sessions": [
        {"name": "b1", "input": str(h.movie), "output": "b1.zarr", "until": "motion"}]}))
    with Client(url, h.token) as svc:
        batch = svc.submit_batch(manifest)
        assert batch.name == "sessions" and [r.name for r in batch.runs] == ["b1"]
        run = svc.wait(batch.runs[0].id, progress=False, poll=0.2)
        assert run.output == str(folder / "b1.zarr")


def test_clients_say_what_is_wrong_in_one_line(service, monkeypatch):
    h, url = service
    monkeypatch.delenv("CALCIUM_DASK_TOKEN", raising=False)
    with pytest.raises(ServiceRequestError, match="no token"):
        Client(url)
    with pytest.raises(ServiceRequestError, match=r"a valid token is required .*\(HTTP 401\)"):
        Client(url, "wrong-token").runs()
    with pytest.raises(ServiceRequestError, match="cannot reach the service at http://127.0.0.1:"):
        Client(f"http://127.0.0.1:{free_port()}", "x").runs()


def test_the_cli_submits_shows_watches_and_cancels(service, capsys, monkeypatch):
    h, url = service
    monkeypatch.setenv("CALCIUM_DASK_TOKEN", h.token)
    monkeypatch.setenv("CALCIUM_DASK_SERVICE", url)
    code, out, err = _cli(capsys, "submit", str(h.movie), "--out", str(h.results / "cli.zarr"), "--set", "init.K=3",
                          "--until", "motion", "--name", "from-cli")
    assert code == 0 and err.startswith(f"run {out.strip()} from-cli: ")
    rid = int(out.strip())
    code, out, err = _cli(capsys, "watch", str(rid))
    assert code == 0 and f"run {rid} from-cli: done (motion done)" in err
    code, out, _ = _cli(capsys, "status", str(rid), "--json")
    assert code == 0 and json.loads(out)["params"]["init"]["K"] == 3
    code, out, _ = _cli(capsys, "status", "--name", "from-cli")
    assert code == 0 and out.strip() == f"run {rid} from-cli: done (motion done)"
    code, _, err = _cli(capsys, "cancel", str(rid))
    assert code == 2 and err.strip() == f"calcium-dask: error: {url}: run {rid} is already done (HTTP 409)"
    code, _, err = _cli(capsys, "submit", str(h.movie), "--out", "/elsewhere/x.zarr")
    assert code == 2 and "outside the allowed roots" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "submit", str(h.movie))
    assert code == 2 and "give MOVIE and --out" in err


def test_cancel_from_the_cli_stops_a_queued_or_running_run(service, capsys, monkeypatch):
    h, url = service
    monkeypatch.setenv("CALCIUM_DASK_TOKEN", h.token)
    code, out, _ = _cli(capsys, "submit", str(h.movie), "--out", str(h.results / "stop.zarr"), "--service", url)
    rid = out.strip()
    code, out, _ = _cli(capsys, "cancel", rid, "--service", url)
    assert code == 0 and out.strip() in (f"run {rid}: cancelled", f"run {rid}: cancelling")
    code, _, err = _cli(capsys, "watch", rid, "--service", url)
    assert code == 1 and f"run {rid} movie: cancelled" in err
