"""The documentation site (``docs/``): every public name documented, every name the pages
cite real, and the site built with warnings as errors (as ``.ci/run`` builds it)."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import click
import pytest

import calcium_dask as cd

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]

# The public modules: a user imports from these (their __all__ is their public surface).
PUBLIC_MODULES = [
    "calcium_dask", "calcium_dask.cluster", "calcium_dask.params", "calcium_dask.caiman_params",
    "calcium_dask.pipeline", "calcium_dask.results", "calcium_dask.store", "calcium_dask.errors",
    "calcium_dask.batch", "calcium_dask.fields", "calcium_dask.kube", "calcium_dask.nwb",
    "calcium_dask.io", "calcium_dask.motion", "calcium_dask.cnmf", "calcium_dask.datasets",
    "calcium_dask.datasets.scoring", "calcium_dask.viz", "calcium_dask.tracking",
    "calcium_dask.service", "calcium_dask.service.schemas",
    "calcium_dask.motion.kernels", "calcium_dask.summary.kernels", "calcium_dask.tracking.kernels",
]


def _public_objects() -> dict[str, object]:
    """Dotted name -> object, for every public name of the public modules and the public
    methods and properties of their classes (defined in calcium_dask)."""
    out: dict[str, object] = {}
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
                continue  # constants and subpackages: documented where they are listed
            if isinstance(obj, click.Command):
                continue  # a CLI command: the command line reference shows its --help
            out[f"{modname}.{name}"] = obj
            if inspect.isclass(obj) and obj.__module__.startswith("calcium_dask"):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or attr.startswith("model_"):
                        continue
                    if isinstance(member, (property, classmethod, staticmethod)) or inspect.isfunction(member):
                        out[f"{modname}.{name}.{attr}"] = member
    return out


def _docstring(obj: object) -> str:
    """An object's own docstring: a class's is not its base's (pydantic's BaseModel has one)
    nor the signature dataclasses write in place of a missing one."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        return "" if doc.startswith(f"{obj.__name__}(") else doc.strip()
    return (inspect.getdoc(getattr(obj, "__func__", obj)) or "").strip()


def test_every_public_name_has_a_docstring():
    names = _public_objects()
    assert "calcium_dask.Results.select_components" in names and "calcium_dask.cnmf.refit" in names
    missing = [name for name, obj in names.items() if not _docstring(obj)]
    assert not missing, f"public names without a docstring: {missing}"


def test_a_class_without_a_docstring_of_its_own_is_found():
    import dataclasses

    from pydantic import BaseModel

    class Model(BaseModel):
        x: int

    @dataclasses.dataclass
    class Record:
        x: int

    assert _docstring(Model) == "" and _docstring(Record) == "" and _docstring(cd.Results)


def _directives(text: str) -> set[str]:
    return set(re.findall(r"^\s*\.\. auto\w+:: ([\w.]+)", text, flags=re.M))


def test_every_name_of_the_package_namespace_is_in_the_api_reference():
    page = (DOCS / "api" / "calcium_dask.rst").read_text()
    documented = _directives(page) | set(re.findall(r"^\.\. py:data:: (\w+)", page, flags=re.M))
    documented |= {name.rpartition(".")[2] for name in documented}
    absent = [name for name in cd.__all__ if name not in documented and name not in ("viz", "datasets")]
    assert not absent, f"calcium_dask names missing from docs/api/calcium_dask.rst: {absent}"


# -- names cited in prose and code blocks -------------------------------------------------
def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*") if p.suffix in (".md", ".rst") and "_build" not in p.parts)


def _object(dotted: str) -> object | None:
    """What a dotted name means in Python code (an attribute before a submodule of the
    same name: ``calcium_dask.cnmf.refit`` is the function), or None."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            return None
    return obj


def _resolves(dotted: str) -> bool:
    return _object(dotted) is not None


def _cited_names(text: str) -> set[str]:
    names = {"calcium_dask." + m for m in re.findall(r"\bcd\.([A-Za-z_][\w.]*\w)", text)}
    names |= set(re.findall(r"\bcalcium_dask(?:\.[A-Za-z_]\w*)+", text))
    return names


def test_every_python_name_the_pages_cite_exists():
    """``cd.x.y`` and ``calcium_dask.x.y`` in the pages' prose and code (cross-references are
    checked by the build; these are what it cannot see)."""
    unknown = {}
    for page in _pages():
        for name in _cited_names(page.read_text()):
            # a method called on a result (``cd.open_results(url).A``) is cut at the call
            if not _resolves(name):
                unknown.setdefault(page.relative_to(DOCS).as_posix(), []).append(name)
    assert not unknown, f"names cited in docs/ that do not import: {unknown}"


def test_every_attribute_the_pages_read_from_results_exists():
    """``res.x`` / ``est.x`` (a Results) and ``mc.x`` (a MotionResult) in the pages and the
    notebook name real attributes."""
    import dataclasses

    from calcium_dask.motion import MotionResult

    def names(cls: type) -> set[str]:
        return set(dir(cls)) | {f.name for f in dataclasses.fields(cls)}

    kinds = {"res": names(cd.Results), "est": names(cd.Results), "mc": names(MotionResult)}
    texts = {p: p.read_text() for p in [*_pages(), ROOT / "notebooks" / "demo_pipeline.ipynb"]}
    unknown = sorted({f"{p.name}: {var}.{attr}" for p, text in texts.items() for var, known in kinds.items()
                      for attr in re.findall(rf"\b{var}\.(\w+)", text) if attr not in known})
    assert "ds" in kinds["res"] and "motion" in kinds["mc"] and "nonexistent" not in kinds["res"]
    assert not unknown, f"attributes the docs read that do not exist: {unknown}"


def _cli_lines(text: str) -> list[str]:
    """``calcium-dask ...`` command lines of the code blocks and inline code of a page."""
    text = re.sub(r"\\\n\s*", " ", text)  # a command continued on the next line
    code = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    code += re.findall(r"^\.\. code-block::[^\n]*\n\n((?:   .*\n|\n)+)", text, flags=re.M)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return [" ".join(m.split()) for c in code for m in re.findall(r"^\s*(?:\$ )?(calcium-dask [^`\n#|]*)", c, flags=re.M)]


def test_every_command_and_option_the_pages_cite_exists():
    from calcium_dask.cli import cli

    wrong = []
    for page in _pages():
        for line in _cli_lines(page.read_text()):
            words = line.split()[1:]
            if not words or words[0].startswith("-"):
                continue
            command = cli.commands.get(words[0])
            if command is None:
                wrong.append(line)
                continue
            if isinstance(command, click.Group) and len(words) > 1 and words[1] in command.commands:
                command = command.commands[words[1]]
            options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
            wrong += [f"{line}: {w}" for w in words if w.startswith("--") and w.split("=")[0] not in options]
    assert not wrong, f"calcium-dask commands or options in docs/ that do not exist: {wrong}"


def test_the_checks_of_cited_names_can_fail():
    assert _cited_names("`cd.open_movie(url)` and `calcium_dask.params.describe`") == {
        "calcium_dask.open_movie", "calcium_dask.params.describe"}
    assert _resolves("calcium_dask.params.describe") and not _resolves("calcium_dask.open_moive")
    assert _cli_lines("calcium-dask reads it; run `calcium-dask run a.tif --out r.zarr`\n\n```bash\n"
                      "calcium-dask params --describe  # all\ncalcium-dask run m.tif \\\n    --out r.zarr\n```\n") == [
        "calcium-dask params --describe", "calcium-dask run m.tif --out r.zarr", "calcium-dask run a.tif --out r.zarr"]


# -- the build ------------------------------------------------------------------------------
def test_an_undocumented_public_name_or_a_broken_reference_fails_the_build(tmp_path):
    """The site's checks, on a two-line project: no docstring and a reference to nothing
    are each an error under ``-W``."""
    (tmp_path / "undocumented.py").write_text("def f(x):\n    return x\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(DOCS / "_ext")!r}, {str(tmp_path)!r}]
        extensions = ["sphinx.ext.autodoc", "numpydoc", "calcium_docs"]
        nitpicky = True
    """))
    (src / "index.rst").write_text("Title\n=====\n\n.. autofunction:: undocumented.f\n")
    run = subprocess.run([*BUILD, str(src), str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode != 0 and "undocumented.f has no docstring" in run.stderr, run.stderr

    (tmp_path / "undocumented.py").write_text('def f(x):\n    """Return x."""\n    return x\n')
    (src / "index.rst").write_text("Title\n=====\n\n.. autofunction:: undocumented.f\n\nSee :func:`g`.\n")
    run = subprocess.run([*BUILD, "-E", str(src), str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode != 0 and "reference target not found: g" in run.stderr, run.stderr


def _inventory(path: Path) -> set[str]:
    """Names of the Python objects an ``objects.inv`` lists."""
    data = path.read_bytes()
    body = zlib.decompress(data[data.index(b"\n", data.index(b"zlib")) + 1:]).decode()
    rows = (line.split(" ", 2) for line in body.splitlines())
    return {row[0] for row in rows if len(row) > 1 and row[1].startswith("py:")}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built by the command of the README and ``.ci/run`` (into a temporary folder)."""
    tmp = tmp_path_factory.mktemp("docs")
    run = subprocess.run([*BUILD, "-d", str(tmp / "doctrees"), str(DOCS), str(tmp / "html")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    return tmp / "html"


@pytest.mark.slow  # the build takes ~25 s of CPU; .ci/run runs these after the default run
def test_the_site_builds_with_warnings_as_errors_and_renders_the_notebook(site):
    """The notebook is rendered as committed (not run); the generated pages are there."""
    notebook = (site / "notebooks" / "demo_pipeline.html").read_text()
    assert "cd.motion_correct" in notebook and "cd.evaluate" in notebook
    assert "Usage: calcium-dask params [OPTIONS]" in (site / "reference" / "cli.html").read_text()
    assert "min_SNR" in (site / "reference" / "parameters.html").read_text()


@pytest.mark.slow
def test_every_public_name_is_in_the_api_reference(site):
    """Every public class and function (and its methods) is documented under one of its
    import paths: ``calcium_dask.Results`` stands for ``calcium_dask.results.Results``."""
    inventory = _inventory(site / "objects.inv")
    assert {"calcium_dask.cnmf.fit", "calcium_dask.Results.select_components"} <= inventory
    documented = {id(getattr(o, "__func__", o)) for o in map(_object, inventory) if o is not None}
    absent = [name for name, obj in _public_objects().items()
              if not isinstance(obj, property) and id(getattr(obj, "__func__", obj)) not in documented]
    assert not absent, f"public names the API reference does not document: {absent}"


def test_the_readme_and_ci_build_the_docs_the_same_way():
    readme = (ROOT / "README.md").read_text()
    command = "python -m sphinx -W -b html docs docs/_build/html"
    assert command in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q -m slow tests/test_docs.py" in ci  # builds it with the README's command
    assert re.search(r'^nb_execution_mode = "off"', (DOCS / "conf.py").read_text(), flags=re.M)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
