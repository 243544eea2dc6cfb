"""Pages of the documentation generated from the code, so that they never drift from it.

- ``calcium-params``: every parameter of :mod:`calcium_dask.params`, by group, with its
  type, default, valid range and documentation (:func:`calcium_dask.params.describe`,
  the registry behind ``calcium-dask params --describe`` and validation).
- ``calcium-cli``: the ``--help`` of every ``calcium-dask`` command, or the output of a
  command (``:command: params --caiman``).
- ``calcium-layers``: the import-linter layers of ``pyproject.toml``.

One check: a documented function, class, method, property or module without a docstring is
a warning (an error under ``-W``); ``autodoc_default_options`` includes undocumented members,
so none is skipped silently.

And two fixes of autodoc's output:

- a reference to an object by another of its import paths (``calcium_dask.params.Params``,
  where the page documents ``calcium_dask.Params``; a kernel by its submodule) resolves
  to where it is documented; a reference to anything undocumented still fails the build;
- a dataclass field with a ``default_factory`` shows ``...`` as its default in the
  signature (Python's ``<factory>`` is no expression, and the signature could not be read).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


logger = logging.getLogger(__name__)


def _type_name(tp: Any) -> str:
    text = str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace("NoneType", "None")


def _range(meta: Any) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    return f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"


def _cell(text: str) -> str:
    """Text for a list-table cell: literal, its backquotes and stars escaped."""
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("*", "\\*").replace("|", "\\|")


def parameter_rst() -> list[str]:
    """One section and one table per parameter group (reStructuredText lines)."""
    from calcium_dask.params import GROUPS, describe

    rows = describe()
    lines: list[str] = []
    for group, cls in GROUPS.items():
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        title = f"``{group}``"
        lines += [title, "-" * len(title), "",
                  # the group's class (``Params.<group>``), a target for references to it
                  f".. py:class:: {cls.__module__}.{cls.__name__}", "",
                  f"   ``Params.{group}``: a frozen dataclass of the parameters below.", "",
                  ".. list-table::", "   :header-rows: 1", "   :widths: 22 14 12 10 42", "",
                  "   * - parameter", "     - type", "     - default", "     - range", "     - meaning"]
        for key, default, text in rows:
            g, _, name = key.partition(".")
            if g != group:
                continue
            meta = fields[name].metadata
            lines += [f"   * - ``{key}``", f"     - {_cell(_type_name(hints[name]))}",
                      f"     - ``{default!r}``", f"     - {_cell(_range(meta))}", f"     - {_cell(text)}"]
        lines.append("")
    return lines


class ParamsDirective(SphinxDirective):
    """``.. calcium-params::``: the parameter registry as tables."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import calcium_dask.params

        self.env.note_dependency(calcium_dask.params.__file__)
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(parameter_rst(), source="calcium_dask.params.describe()"),
                                 container, self.content_offset)
        return container.children


def command_output(args: list[str]) -> str:
    """What ``calcium-dask ARGS`` prints (run in this process, no subprocess)."""
    from click.testing import CliRunner

    from calcium_dask.cli import cli

    result = CliRunner().invoke(cli, args, prog_name="calcium-dask", terminal_width=100)
    if result.exit_code != 0:
        raise RuntimeError(f"calcium-dask {' '.join(args)} failed: {result.output}")
    return result.output.rstrip()


class CliDirective(SphinxDirective):
    """``.. calcium-cli::``: each command's ``--help`` (or ``:command:``'s output) as a literal block."""

    has_content = False
    option_spec = {"command": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from calcium_dask.cli import cli

        if "command" in self.options:
            text = command_output(self.options["command"].split())
            return [nodes.literal_block(text, text, language="text")]
        import click

        out: list[nodes.Node] = []
        names: list[list[str]] = [[]]
        for name in sorted(cli.commands):
            names.append([name])
            command = cli.commands[name]
            if isinstance(command, click.Group):  # e.g. serve create-token
                names += [[name, sub] for sub in sorted(command.commands)]
        for path in names:
            title = " ".join(["calcium-dask", *path])
            section = nodes.section(ids=[nodes.make_id("cli-" + ("-".join(path) or "main"))])
            section += nodes.title(title, "", nodes.literal(title, title))
            text = command_output([*path, "--help"])
            section += nodes.literal_block(text, text, language="text")
            out.append(section)
        return out


def _import(name: str) -> Any:
    """The object a dotted name means (None if nothing): as code reads it, an attribute
    before a submodule of the same name (``calcium_dask.cnmf.refit`` is the function), else
    through the submodule (``calcium_dask.cnmf.refit.update_temporal``, from a module
    docstring's reference)."""
    import importlib

    def walk(obj: Any, attrs: list[str]) -> Any:
        for attr in attrs:
            if not hasattr(obj, attr):
                return None
            obj = getattr(obj, attr)
        return obj

    parts = name.split(".")
    for i in range(1, len(parts) + 1):  # the shortest importable prefix, then attributes
        try:
            found = walk(importlib.import_module(".".join(parts[:i])), parts[i:])
        except ImportError:
            return None
        if found is not None:
            return found
    return None


_DOCUMENTED = "calcium_docs_documented"
_KINDS = ("function", "class", "exception", "method", "classmethod", "staticmethod", "property", "module")


def _documented(env: Any) -> dict[int, str]:
    """id(object) -> the name it is documented under (built once per build)."""
    cache = getattr(env, _DOCUMENTED, None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            if entry.objtype in _KINDS and not entry.aliased:
                obj = _import(name)
                if obj is not None:
                    cache.setdefault(id(getattr(obj, "__func__", obj)), name)
        setattr(env, _DOCUMENTED, cache)
    return cache


def resolve_alias(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference by the object it names, when that object is documented
    under another name (an import path of the same object)."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [f"{module}.{cls}.{target}"] if module and cls else []
    candidates += [f"{module}.{target}"] if module else []
    candidates.append(target)
    for name in candidates:
        obj = _import(name)
        if obj is None or isinstance(obj, (int, float, str, bool, tuple, dict)):
            continue
        documented = _documented(env).get(id(getattr(obj, "__func__", obj)))
        if documented and documented != name:
            py = env.get_domain("py")
            for role in (node["reftype"], "obj"):
                found = py.resolve_xref(env, node["refdoc"], app.builder, role, documented, node, contnode)
                if found is not None:
                    return found
    return None


def _no_factory(app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None,
                return_annotation: str | None) -> tuple[str | None, str | None] | None:
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


_NEEDS_DOCSTRING = ("function", "class", "exception", "method", "property", "module")


def require_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Warn (an error under ``-W``) when a documented function, class, method, property or
    module has no docstring of its own or inherited: every public name must say what it does."""
    if what in _NEEDS_DOCSTRING and not any(line.strip() for line in lines):
        logger.warning("%s %s has no docstring", what, name, type="calcium_docs", subtype="docstring")


def _forget(app: Sphinx, env: Any, *args: Any) -> None:
    if hasattr(env, _DOCUMENTED):
        delattr(env, _DOCUMENTED)


class LayersDirective(SphinxDirective):
    """``.. calcium-layers::``: the import-linter layers of ``pyproject.toml``, highest first."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import tomllib
        from pathlib import Path

        path = Path(self.env.srcdir).parent / "pyproject.toml"
        self.env.note_dependency(str(path))
        contracts = tomllib.loads(path.read_text())["tool"]["importlinter"]["contracts"]
        layers = next(c["layers"] for c in contracts if c.get("type") == "layers")
        text = "\n".join(layer.replace(" : ", " | ") for layer in layers)
        return [nodes.literal_block(text, text, language="text")]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("calcium-layers", LayersDirective)
    app.add_directive("calcium-params", ParamsDirective)
    app.add_directive("calcium-cli", CliDirective)
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-signature", _no_factory)
    # before numpydoc's (priority 500) rewrites the lines into its sections
    app.connect("autodoc-process-docstring", require_docstring, priority=100)
    app.connect("env-updated", _forget)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
