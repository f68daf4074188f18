"""List the imports of first_pl that run up a floor, and its import loops.

first_pl's rooms (packages and top-level modules) sit on floors: a room may import rooms on its
own floor or below, never above. An import up a floor, even one inside a function, is how a
change to the pipeline breaks the data module; a loop is how importing one file imports half
the package. The floors, lowest first:

    0  fileio precision devices noise layers lora  the ground floor: files, dtype, device,
                                 log noise, layer choice, LoRA adapters
    1  tasks models metrics lm_head prefix
    2  data                      tokens, store, batches, data modules
    3  teacher                   the teacher side: extraction, transforms, choice of c
    4  methods                   the LightningModules: the four methods and their base
    5  callbacks trainer run_folder report lightning_cli
    6  runner                    runs one command by name, for the entry point and the pipeline
    7  pipeline planning         stages that run the commands
    8  commands
    9  cli __main__

    python scripts/import_layers.py            # prints each upward import and loop; exits 1 if any
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "first_pl"
FLOORS: dict[str, int] = {
    "fileio": 0, "precision": 0, "devices": 0, "noise": 0, "layers": 0, "lora": 0,
    "context_cache": 0,
    "tasks": 1, "models": 1, "metrics": 1, "lm_head": 1, "prefix": 1,
    "data": 2,
    "teacher": 3,
    "methods": 4,
    "callbacks": 5, "trainer": 5, "run_folder": 5, "report": 5,
    "lightning_cli": 5,
    "runner": 6,
    "pipeline": 7, "planning": 7,
    "commands": 8,
    "cli": 9, "__main__": 9,
}  # fmt: skip


@dataclass(frozen=True)
class Import:
    """`source` (a module of first_pl) imports `target` at `line`; `lazy` inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


def room(module: str) -> str:
    """The room of `first_pl.x.y`: `x`."""
    return module.split(".")[1] if "." in module else module


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[Import]:
    """Every `import first_pl...` / `from first_pl... import` under `root`, at any depth."""
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        tree = ast.parse(path.read_text(), str(path))
        lazy_lines = {
            node.lineno
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(fn)
            if isinstance(node, ast.Import | ast.ImportFrom)
        }
        typing_only = {
            node.lineno
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
            if isinstance(node, ast.Import | ast.ImportFrom)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if (
                    name.split(".")[0] == PACKAGE
                    and name != PACKAGE
                    and node.lineno not in typing_only
                ):
                    yield Import(source, name, node.lineno, node.lineno in lazy_lines)


def floor(module: str) -> int:
    name = room(module)
    if name not in FLOORS:
        raise KeyError(f"{module}: room {name!r} has no floor; add it to FLOORS in {__file__}")
    return FLOORS[name]


def upward(found: list[Import]) -> list[Import]:
    """Imports from a room to a room on a higher floor."""
    return [i for i in found if floor(i.target) > floor(i.source)]


def loops(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def room_loops(found: list[Import]) -> list[list[str]]:
    return loops(
        {(room(i.source), room(i.target)) for i in found if room(i.source) != room(i.target)}
    )


def module_loops(found: list[Import]) -> list[list[str]]:
    """Loops between modules through their imports, at import or inside a function: an import
    inside a function runs when it is called, and ties the two modules all the same."""
    modules = {i.source for i in found}
    edges = {(i.source, i.target) for i in found if i.target in modules and i.target != i.source}
    return loops(edges)


def main(root: Path) -> int:
    found = list(imports(root))
    up = upward(found)
    for i in up:
        kind = "inside a function" if i.lazy else "at import"
        print(f"up a floor: {i.source}:{i.line} -> {i.target} "
              f"(floor {floor(i.source)} -> {floor(i.target)}, {kind})")  # fmt: skip
    rooms, modules = room_loops(found), module_loops(found)
    for component in rooms:
        print(f"room loop: {' <-> '.join(component)}")
    for component in modules:
        print(f"module loop: {' <-> '.join(component)}")
    print(f"{len(up)} imports up a floor ({sum(not i.lazy for i in up)} at import), "
          f"{len(rooms)} room loops, {len(modules)} module loops")  # fmt: skip
    return 1 if up or rooms or modules else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / PACKAGE))
