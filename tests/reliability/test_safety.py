"""Safety: nothing read from users or storage is unpickled or executed; YAML is loaded safely;
local services bind to the loopback interface."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import calcium_dask

SOURCES = sorted(Path(calcium_dask.__file__).parent.rglob("*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_unsafe_loading(path):
    problems = []
    for node, name in _calls(path):
        keywords = {k.arg: k.value for k in node.keywords}
        allow = keywords.get("allow_pickle")
        if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
            problems.append(f"line {node.lineno}: allow_pickle={ast.unparse(allow)}")
        if name in ("np.load", "numpy.load") and allow is None:
            problems.append(f"line {node.lineno}: np.load without allow_pickle=False")
        if name.split(".")[-1] in ("loads", "load", "Unpickler") and name.split(".")[0] in ("pickle", "cloudpickle",
                                                                                           "dill", "joblib"):
            problems.append(f"line {node.lineno}: {name}")
        if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
            problems.append(f"line {node.lineno}: {name} (use yaml.safe_load)")
        if name in ("eval", "exec"):
            problems.append(f"line {node.lineno}: {name}")
    assert not problems, f"{path}: {problems}"


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle, yaml, numpy as np\n"
                   "pickle.loads(b'')\nyaml.load('a')\nnp.load('x.npy')\nnp.load('y', allow_pickle=True)\n")
    with pytest.raises(AssertionError) as e:
        test_no_unsafe_loading(bad)
    for what in ("pickle.loads", "yaml.load", "np.load without", "allow_pickle=True"):
        assert what in str(e.value)


def test_defaults_bind_to_loopback():
    import inspect

    from calcium_dask.cluster import connect

    default = inspect.signature(connect).parameters["dashboard_address"].default
    assert default.startswith("127.0.0.1:")
