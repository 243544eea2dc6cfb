"""Where each parameter of the registry is read, found in the package's source.

    python tests/param_reads.py            # every parameter and the places that read it
    python tests/param_reads.py --unread   # only the parameters nothing reads

A read is an attribute ``<group object>.<name>`` where the group object is
``<anything>.<group>`` (``params.temporal.p``), a local name bound to one
(``tp = params.temporal`` ... ``tp.p``), or a function argument annotated with the group's
class (``mp: MotionParams`` ... ``mp.max_shifts``); ``params.gSiz()`` reads ``init.gSiz``;
stored parameters read as a dict, ``....get("data", {}).get("dxy")``, count too. ``params.py`` itself is not counted
(validation and serialisation read every field). ``tests/test_params_honoured.py`` uses
:func:`reads` to check that nothing listed by ``calcium-dask params --describe`` goes unread;
whether a read changes the result is what its behavioural tests check.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "calcium_dask"


def _groups() -> dict[str, tuple[str, set[str]]]:
    """group name -> (class name, field names), from the registry."""
    from calcium_dask.params import GROUPS

    return {g: (cls.__name__, {f.name for f in dataclasses.fields(cls)}) for g, cls in GROUPS.items()}


class _Reads(ast.NodeVisitor):
    def __init__(self, groups: dict[str, tuple[str, set[str]]], where: str) -> None:
        self.groups = groups
        self.by_class = {cls: g for g, (cls, _) in groups.items()}
        self.where = where
        self.scopes: list[dict[str, str]] = [{}]  # local name -> group, per function
        self.found: list[tuple[str, str, str]] = []  # (group.key, file:line, function)
        self.function = "<module>"

    def _group_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute) and node.attr in self.groups:
            return node.attr
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return scope[node.id]
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        scope: dict[str, str] = {}
        for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            ann = ast.unparse(a.annotation) if a.annotation is not None else ""
            for cls, g in self.by_class.items():
                if ann.replace(" | None", "") == cls:
                    scope[a.arg] = g
        self.scopes.append(scope)
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assign(self, node: ast.Assign) -> None:
        targets = node.targets[0]
        values = node.value
        pairs = (zip(targets.elts, values.elts) if isinstance(targets, ast.Tuple) and isinstance(values, ast.Tuple)
                 else [(targets, values)])
        for t, v in pairs:
            g = self._group_of(v)
            if isinstance(t, ast.Name) and g is not None:
                self.scopes[-1][t.id] = g
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        g = self._group_of(node.value)
        if g is not None and node.attr in self.groups[g][1]:
            self._found(f"{g}.{node.attr}", node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr == "gSiz" and not node.args:
            self._found("init.gSiz", node)  # Params.gSiz(): init.gSiz, or 2 gSig + 1
        # stored parameters read as a dict: ...get("<group>", ...).get("<key>")
        inner = node.func.value if isinstance(node.func, ast.Attribute) and node.func.attr == "get" else None
        if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "get"
                and inner.args and node.args and all(isinstance(a, ast.Constant) for a in (inner.args[0], node.args[0]))):
            g, k = inner.args[0].value, node.args[0].value
            if g in self.groups and k in self.groups[g][1]:
                self._found(f"{g}.{k}", node)
        self.generic_visit(node)

    def _found(self, key: str, node: ast.AST) -> None:
        self.found.append((key, f"{self.where}:{node.lineno}", self.function))


def reads() -> dict[str, list[tuple[str, str]]]:
    """``group.key`` -> [(file:line, function)] for every parameter (empty list: unread)."""
    groups = _groups()
    out: dict[str, list[tuple[str, str]]] = {f"{g}.{k}": [] for g, (_, keys) in groups.items() for k in sorted(keys)}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel == "calcium_dask/params.py":
            continue
        visitor = _Reads(groups, rel)
        visitor.visit(ast.parse(path.read_text(), rel))
        for key, where, function in visitor.found:
            out[key].append((where, function))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    table = reads()
    unread = [k for k, v in table.items() if not v]
    for key, places in table.items():
        if "--unread" in argv and places:
            continue
        by_file: dict[str, list[str]] = defaultdict(list)
        for where, function in places:
            file, line = where.rsplit(":", 1)
            by_file[file].append(f"{line} ({function})")
        text = "; ".join(f"{f}: {', '.join(v)}" for f, v in by_file.items()) or "UNREAD"
        print(f"{key:<36} {text}")
    print(f"{len(table)} parameters, {len(unread)} unread")
    return 1 if unread else 0


if __name__ == "__main__":
    sys.exit(main())
