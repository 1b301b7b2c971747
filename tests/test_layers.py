"""The package's shape: layers as folders, imports pointing down, small modules and functions.

Read from the source with ``ast`` (nothing is imported), so a new upward import, a cycle, a
typer/rich import outside the command line or an overgrown module fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "biomedvr_cli"

# Bottom to top. A module may import its own layer and any layer below it.
LAYERS = (
    ("__init__", "errors", "atomic", "distributed"),
    ("data",),
    ("backbones",),
    ("attributes",),
    ("adapter",),
    ("method",),
    ("sandbox",),
    ("pipeline",),
    ("benchmark",),
    ("cli", "__main__"),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_LOOSE_MODULES = 5


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_prompts" not in p.parts)


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    """Every biomedvr_cli module this file imports (at any depth, lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("biomedvr_cli"):
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names if a.name.startswith("biomedvr_cli"))
    return out


def _third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    return names


def test_every_module_belongs_to_a_layer() -> None:
    unknown = {_top(_dotted(p)) for p in _modules()} - set(RANK)
    assert not unknown, f"modules outside the layer table: {unknown}"


def test_imports_point_down_the_layers() -> None:
    upward = []
    for path in _modules():
        here = _top(_dotted(path))
        for target in _imports(path):
            there = _top(target)
            if there in RANK and RANK[there] > RANK[here]:
                upward.append(f"{_dotted(path)} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    known = {_dotted(p): p for p in _modules()}
    graph = {name: {t for t in _imports(path) if t in known and t != name} for name, path in known.items()}
    # Drop edges to a package __init__ that only re-exports (package -> its own submodule is not a cycle).
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_typer_and_rich_only_in_the_command_line() -> None:
    outside = [_dotted(p) for p in _modules()
               if _top(_dotted(p)) != "cli" and {"typer", "rich", "click"} & _third_party(p)]
    assert not outside, outside


def test_few_loose_modules_and_small_modules() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py")]
    assert len(loose) <= MAX_LOOSE_MODULES, loose
    long_modules = [f"{_dotted(p)}: {n}" for p in _modules()
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long_modules, long_modules


def test_functions_are_short() -> None:
    long_functions = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # The body only: a command's option declarations and the docstring are data, not logic.
                body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
                length = (node.end_lineno or node.lineno) - body[0].lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{_dotted(path)}.{node.name}: {length} lines")
    assert not long_functions, "\n".join(long_functions)
