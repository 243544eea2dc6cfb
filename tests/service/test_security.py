"""What the service never does: run a shell with user text, listen beyond loopback unless told, leak tokens."""

from __future__ import annotations

import ast
from pathlib import Path

import calcium_dask.service as service_pkg

SERVICE = Path(service_pkg.__file__).resolve().parent
#: what runs a program or evaluates text: none of it anywhere in the service
FORBIDDEN_MODULES = {"subprocess", "pty", "commands", "pickle", "shelve", "marshal"}
BUILTINS = {"eval", "exec", "compile", "__import__"}
MODULE_CALLS = {"os": {"system", "popen", "spawnl", "spawnle", "spawnlp", "spawnv", "spawnve", "spawnvp", "execl",
                       "execle", "execlp", "execv", "execve", "execvp", "posix_spawn", "posix_spawnp", "fork"},
                "asyncio": {"create_subprocess_shell", "create_subprocess_exec"}}


def _sources() -> list[Path]:
    files = sorted(SERVICE.rglob("*.py"))
    assert len(files) >= 15, files
    return files


def _problems(source: str) -> list[str]:
    """Imports and calls in ``source`` that could run a program or evaluate text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in FORBIDDEN_MODULES or any(a.name in MODULE_CALLS.get(top, ()) for a in node.names):
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in BUILTINS:
                found.append(f"{f.id}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and \
                    f.attr in MODULE_CALLS.get(f.value.id, ()):
                found.append(f"{f.value.id}.{f.attr}()")
            found += ["shell=" for k in node.keywords if k.arg == "shell"]
    return found


def test_the_service_never_runs_a_program_or_evaluates_text():
    for path in _sources():
        assert _problems(path.read_text()) == [], path.name


def test_the_scan_does_catch_them():
    """Guard against a scan that passes everything."""
    bad = ("import os, subprocess\nfrom os import system\n"
           "def f(x):\n    os.system('ls ' + x)\n    eval(x)\n    run(x, shell=True)\n")
    assert _problems(bad) == ["import subprocess", "from os import ...", "os.system()", "eval()", "shell="]


def test_serve_listens_on_loopback_unless_told_otherwise():
    from calcium_dask.service.commands import serve_command
    from calcium_dask.service.server import ServeOptions

    parsed = serve_command.make_context("serve", ["--allowed-root", "/data"]).params
    assert parsed["host"] == "127.0.0.1" == ServeOptions(roots=["/"]).host
    assert parsed["cors_origins"] == () == ServeOptions(roots=["/"]).cors_origins


def test_a_run_name_full_of_shell_syntax_is_only_text(api, harness, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    name = "$(touch p1); `touch p2` | touch p3 && <script>alert(1)</script>"
    r = api.post("/api/runs", json=harness.body(name=name))
    assert r.status_code == 201, r.json()
    rid = r.json()["id"]
    assert api.get(f"/api/runs/{rid}").json()["name"] == name
    page = api.get(f"/runs/{rid}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert list(cwd.iterdir()) == []


def test_tokens_never_appear_in_responses_or_logs(api, harness):
    rid = api.post("/api/runs", json=harness.body()).json()["id"]
    for path in ("/api/runs", f"/api/runs/{rid}", f"/api/runs/{rid}/log", "/metrics", "/healthz", "/"):
        assert harness.token not in api.get(path).text, path
