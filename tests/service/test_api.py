"""The HTTP API without computing: tokens, validation, allowed roots, limits, listing, batches, metrics."""

from __future__ import annotations

import json

import pytest
import yaml
from fastapi.testclient import TestClient

from calcium_dask.errors import one_line
from calcium_dask.params import Params
from calcium_dask.service.app import create_app

# every route and the methods it answers; none may answer without a token except these
PUBLIC = {("GET", "/healthz"), ("GET", "/login"), ("POST", "/api/login"), ("POST", "/api/logout")}
PAGES = {("GET", "/"), ("GET", "/runs/{run_id}")}  # answer 401 with the login page


def _routes(routes) -> list[tuple[str, str]]:
    """(method, path) of every route, inside included routers too."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI keeps included routers whole
        if inner is not None:
            out += _routes(inner.routes)
            continue
        out += [(m, route.path) for m in sorted(getattr(route, "methods", None) or []) if m != "HEAD"]
    return out


def _fill(path: str) -> str:
    return path.replace("{run_id}", "1").replace("{name}", "mean")


def test_every_route_needs_a_valid_token(harness):
    app = create_app(harness.service)
    routes = _routes(app.routes)
    assert ("POST", "/api/runs") in routes and ("GET", "/metrics") in routes and len(routes) >= 15
    with TestClient(app) as anonymous:
        for method, path in routes:
            if (method, path) in PUBLIC:
                continue
            for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {harness.token}"},
                            {"Cookie": "calcium_dask_token=wrong"}):
                r = anonymous.request(method, _fill(path), headers=headers, json={})
                assert r.status_code == 401, (method, path, headers, r.status_code)
                if (method, path) in PAGES:
                    assert "Log in" in r.text
                else:
                    assert r.json()["detail"].startswith("a valid token is required")
        assert anonymous.get("/static/dashboard.js").status_code == 200  # public assets only
        assert anonymous.get("/docs").status_code == 404 and anonymous.get("/openapi.json").status_code == 404


def test_the_openapi_schema_describes_the_api(api):
    schema = api.get("/api/openapi.json").json()
    assert schema["info"]["title"] == "calcium-dask service"
    assert {"/api/runs", "/api/runs/{run_id}", "/api/batches", "/api/runs/{run_id}/cancel",
            "/api/runs/{run_id}/retry", "/api/runs/{run_id}/report", "/api/runs/{run_id}/log", "/metrics",
            "/healthz"} <= set(schema["paths"])
    assert "RunCreate" in schema["components"]["schemas"]


def test_submit_queues_a_run_with_every_parameter(api, harness):
    r = api.post("/api/runs", json=harness.body("first", params={"fr": 15, "K": 3, "pw_rigid": False},
                                                until="cnmf", name="m01 day 1"))
    assert r.status_code == 201 and r.json() == {"id": 1, "state": "queued"}
    assert r.headers["location"] == "/api/runs/1"
    run = api.get("/api/runs/1").json()
    assert (run["name"], run["state"], run["until"], run["progress"]) == ("m01 day 1", "queued", "cnmf", 0)
    assert run["params"] == Params.from_caiman({"fr": 15, "K": 3, "pw_rigid": False}).to_dict()
    assert [(s["stage"], s["state"]) for s in run["stages"]] == [("motion", "pending"), ("cnmf", "pending")]
    assert run["input"] == str(harness.movie.resolve())
    assert api.post("/api/runs", json=harness.body("second")).json()["id"] == 2
    assert api.get("/api/runs/2").json()["name"] == "movie"  # from the input's file name


@pytest.mark.parametrize("params", [{"K": -1}, {"max_shifts": "far"}, {"no_such_param": 1}, {"merge_thr": 1.5}])
def test_bad_parameters_give_the_clis_one_line_message(api, harness, tmp_path, capsys, params):
    from calcium_dask.cli import main

    with pytest.raises(Exception) as e:
        Params.from_caiman(params)
    expected = one_line(e.value)
    r = api.post("/api/runs", json=harness.body(params=params))
    assert r.status_code == 422 and r.json() == {"detail": expected}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(params))
    with pytest.raises(SystemExit) as code:
        main(["params", "--params", str(p)])
    assert code.value.code == 2 and capsys.readouterr().err.strip() == f"calcium-dask: error: {p}: {expected}"


@pytest.mark.parametrize("change, status, match", [
    ({"until": "everything"}, 422, "unknown stage 'everything'; stages are: motion, cnmf, evaluate"),
    ({"input": 3}, 422, "input"),
    ({"extra": 1}, 422, "extra: Extra inputs are not permitted"),
    ({"engine": "avi"}, 422, "engine"),
    ({"input": "relative.tif"}, 422, "must be an absolute path"),
    ({"input": "/nonexistent/../etc/passwd"}, 403, "outside the allowed roots"),
    ({"output": "/tmp/elsewhere.zarr"}, 403, "outside the allowed roots"),
    ({"output": "file://evil.example/x.zarr"}, 403, "no host"),
    ({"input": "memory://x.tif"}, 403, "outside the allowed roots"),
])
def test_bad_submissions_are_refused_with_one_line(api, harness, change, status, match):
    r = api.post("/api/runs", json={**harness.body(), **change})
    assert r.status_code == status and match in r.json()["detail"] and "\n" not in r.json()["detail"]
    assert api.get("/api/runs").json()["total"] == 0


def test_a_missing_input_and_an_output_inside_the_input_are_422(api, harness):
    missing = harness.body(input=str(harness.movie.parent / "nope.tif"))
    assert api.post("/api/runs", json=missing).json()["detail"].endswith("does not exist")
    inside = harness.body(input=str(harness.results / "in.zarr"), output=str(harness.results / "in.zarr/out.zarr"))
    (harness.results / "in.zarr").mkdir()
    r = api.post("/api/runs", json=inside)
    assert r.status_code == 422 and "overlap" in r.json()["detail"]


def test_a_second_active_run_on_one_store_is_a_conflict(api, harness):
    assert api.post("/api/runs", json=harness.body("same")).status_code == 201
    r = api.post("/api/runs", json=harness.body("same"))
    assert r.status_code == 409 and "run 1 writes" in r.json()["detail"]


def test_request_bodies_have_a_size_limit(db, tmp_path, movie):
    from .conftest import make_harness

    h = make_harness(db, tmp_path, movie, max_body=4096)
    with TestClient(create_app(h.service), headers=h.headers) as c:
        big = h.body(name="x" * 100, params={"fr": 30, "padding": "y" * 5000})
        r = c.post("/api/runs", json=big)
        assert r.status_code == 413 and "larger than 4096 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: counted as it streams in
            yield b'{"input": "'
            for _ in range(10):
                yield b"z" * 1000
            yield b'"}'

        r = c.post("/api/runs", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert c.post("/api/runs", json=h.body()).status_code == 201  # a normal one still passes


def test_runs_are_listed_newest_first_filtered_and_paged(api, harness):
    for i in range(7):
        api.post("/api/runs", json=harness.body(f"s{i}", name=f"{'m01' if i % 2 else 'm02'}_100%_{i}"))
    api.post("/api/runs/3/cancel", headers={"Content-Type": "application/json"})
    page = api.get("/api/runs", params={"limit": 3}).json()
    assert (page["total"], [r["id"] for r in page["runs"]]) == (7, [7, 6, 5])
    assert [r["id"] for r in api.get("/api/runs", params={"limit": 3, "offset": 6}).json()["runs"]] == [1]
    assert [r["id"] for r in api.get("/api/runs", params={"name": "m01"}).json()["runs"]] == [6, 4, 2]
    assert api.get("/api/runs", params={"name": "%_"}).json()["total"] == 7  # wildcards taken literally
    assert api.get("/api/runs", params={"name": "_%"}).json()["total"] == 0
    assert [r["id"] for r in api.get("/api/runs", params={"state": "cancelled"}).json()["runs"]] == [3]
    assert api.get("/api/runs", params={"state": "lost"}).status_code == 422
    assert api.get("/api/runs", params={"limit": 501}).status_code == 422
    assert api.get("/api/runs/99").status_code == 404


def test_cancel_and_retry_of_a_queued_run(api, harness):
    api.post("/api/runs", json=harness.body())
    assert api.post("/api/runs/1/retry").status_code == 409
    r = api.post("/api/runs/1/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    assert api.post("/api/runs/1/cancel").status_code == 409
    assert api.post("/api/runs/1/retry").json()["state"] == "queued"
    log = api.get("/api/runs/1/log").text.splitlines()
    assert [ln.split(" ", 2)[1] for ln in log] == ["[event]"] * 3
    assert "cancelled before it started" in log[1] and "queued again" in log[2]


def test_a_batch_manifest_queues_its_sessions(api, harness):
    manifest = {"params": {"fr": 30, "K": 3},
                "sessions": [{"name": "d1", "input": str(harness.movie), "output": str(harness.results / "d1.zarr")},
                             {"name": "d2", "input": str(harness.movie), "output": str(harness.results / "d2.zarr"),
                              "overrides": {"merging.merge_thr": 0.9}, "until": "motion"}]}
    r = api.post("/api/batches", params={"name": "week 1"}, json=manifest)
    assert r.status_code == 201
    out = r.json()
    assert out["name"] == "week 1" and [(x["name"], x["state"]) for x in out["runs"]] == [("d1", "queued"),
                                                                                         ("d2", "queued")]
    d2 = api.get(f"/api/runs/{out['runs'][1]['id']}").json()
    assert d2["params"]["merging"]["merge_thr"] == 0.9 and d2["until"] == "motion" and d2["batch_id"] == out["id"]
    assert api.get("/api/runs", params={"batch_id": out["id"]}).json()["total"] == 2
    as_yaml = yaml.safe_dump({**manifest, "sessions": [{**manifest["sessions"][0], "name": "d3",
                                                        "output": str(harness.results / "d3.zarr")}]})
    r = api.post("/api/batches", content=as_yaml, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201 and r.json()["runs"][0]["name"] == "d3"


@pytest.mark.parametrize("change, status, match", [
    ({"storage_options": {"key": "x"}}, 422, "storage_options are not accepted"),
    ({"sessions": [{"name": "x", "input": "/etc/passwd", "output": "{results}/x.zarr"}]}, 403,
     "session 'x': input /etc/passwd is outside the allowed roots"),
    ({"sessions": [{"name": "x", "input": "{movie}", "output": "rel.zarr"}]}, 422, "must be an absolute path"),
    ({"sessions": [{"name": "x", "input": "{movie}", "output": "{results}/x.zarr"},
                   {"name": "x", "input": "{movie}", "output": "{results}/y.zarr"}]}, 422,
     "manifest: two sessions are named 'x'"),
    ({"params": {"K": -2}}, 422, "manifest: params:"),
    ({"sessons": []}, 422, "did you mean 'sessions'"),
])
def test_bad_manifests_are_refused_before_anything_is_queued(api, harness, change, status, match):
    manifest = {"sessions": [{"name": "ok", "input": str(harness.movie), "output": str(harness.results / "ok.zarr")}]}
    text = json.dumps({**manifest, **change}).replace("{results}", str(harness.results)).replace(
        "{movie}", str(harness.movie))
    r = api.post("/api/batches", content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == status and match in r.json()["detail"], r.json()
    assert api.get("/api/runs").json()["total"] == 0
    assert api.post("/api/batches", content="a: [", headers={"Content-Type": "text/yaml"}).status_code == 422
    assert api.post("/api/batches", content="x", headers={"Content-Type": "text/plain"}).status_code == 415


def test_metrics_count_runs_by_state_in_prometheus_format(api, harness):
    from prometheus_client.parser import text_string_to_metric_families

    for i in range(3):
        api.post("/api/runs", json=harness.body(f"m{i}"))
    api.post("/api/runs/2/cancel")
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    runs = {s.labels["state"]: s.value for s in families["calcium_dask_runs"].samples}
    assert runs == {"queued": 2, "running": 0, "done": 0, "failed": 0, "cancelled": 1}


def test_healthz_needs_no_token_and_reports_the_database(api):
    r = TestClient(api.app).get("/healthz")
    assert r.status_code == 200 and r.json()["database"] == "ok" and r.json()["status"] == "ok"


def test_cors_is_off_by_default_and_on_only_for_named_origins(db, tmp_path, movie):
    from .conftest import make_harness

    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    h = make_harness(db, tmp_path, movie)
    with TestClient(create_app(h.service)) as c:
        r = c.options("/api/runs", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/api/runs", headers={**h.headers, "Origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    h2 = make_harness(db, tmp_path / "2", movie, cors_origins=("https://lab.example",))
    with TestClient(create_app(h2.service)) as c:
        assert "access-control-allow-origin" not in c.options("/api/runs", headers=preflight).headers
        ok = c.options("/api/runs", headers={**preflight, "Origin": "https://lab.example"})
        assert ok.headers["access-control-allow-origin"] == "https://lab.example"


def test_the_dashboard_cookie_works_but_not_for_cross_site_forms(api, harness):
    c = TestClient(api.app)
    assert c.post("/api/login", json={"token": "wrong"}).status_code == 401
    r = c.post("/api/login", json={"token": harness.token})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/").status_code == 200 and "Submit a run" in c.get("/").text
    assert c.post("/api/runs", json=harness.body()).status_code == 201
    form = c.post("/api/runs", content="input=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 403  # what a form on another site could send
    c.post("/api/logout", json={})
    assert c.get("/").status_code == 401


def test_pages_carry_strict_security_headers(api):
    r = api.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_a_run_without_a_store_has_no_report_yet(api, harness):
    api.post("/api/runs", json=harness.body())
    r = api.get("/api/runs/1/report")
    assert r.status_code == 404 and "no results store yet" in r.json()["detail"]
    assert api.get("/api/runs/1/images/mean.png").status_code == 404
    assert api.get("/api/runs/1/images/secret.png").status_code == 404


def test_submissions_run_one_at_a_time_while_reads_go_on(api, harness, monkeypatch):
    # twenty submissions on as many request threads would each take the interpreter lock in
    # turn with the event loop that answers the status reads: they go one at a time
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from calcium_dask.service import queue

    inside, most, lock = 0, 0, threading.Lock()
    submit = queue.submit

    def counted(*args, **kwargs):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.02)
        try:
            return submit(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(queue, "submit", counted)
    rid = api.post("/api/runs", json=harness.body(store="first")).json()["id"]
    with ThreadPoolExecutor(8) as pool:
        posts = [pool.submit(api.post, "/api/runs", json=harness.body(store=f"s{i}")) for i in range(8)]
        reads = [pool.submit(api.get, f"/api/runs/{rid}") for _ in range(8)]
        codes = [f.result().status_code for f in posts + reads]
    assert codes == [201] * 8 + [200] * 8
    assert most == 1
    assert len({r["id"] for r in api.get("/api/runs").json()["runs"]}) == 9
