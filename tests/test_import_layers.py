"""scripts/import_layers.py: imports up a floor and import loops, on a package built here and on
first_pl itself (which has none); `import first_pl.cli` imports no pipeline."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "import_layers.py"


@pytest.fixture(scope="module")
def layers():
    spec = importlib.util.spec_from_file_location("import_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_layers"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def make_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "first_pl"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_upward_imports_and_loops_of_a_small_package(layers, tmp_path, capsys):
    package = make_package(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "",
            "data/a.py": "from first_pl.teacher.b import x\n",  # floor 2 -> 3 at import
            "teacher/__init__.py": "",
            "teacher/b.py": "from first_pl.data.c import y\nx = 1\n",
            "data/c.py": "y = 2\ndef f():\n    import first_pl.cli\n",  # 2 -> 8, lazy
            "cli.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from first_pl.pipeline import p\n",  # typing only: not an import at run time
            "fileio/__init__.py": "",
            "fileio/m.py": "from first_pl.fileio.n import z\n",  # a loop of two modules
            "fileio/n.py": "from first_pl.fileio.m import w\n",
            "fileio/o.py": "def f():\n    from first_pl.fileio.p import v\n",  # a loop, lazily
            "fileio/p.py": "from first_pl.fileio.o import u\n",
        },
    )
    assert layers.main(package) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "up a floor: first_pl.data.a:1 -> first_pl.teacher.b (floor 2 -> 3, at import)",
        "up a floor: first_pl.data.c:3 -> first_pl.cli (floor 2 -> 9, inside a function)",
        "room loop: data <-> teacher",  # cli imports pipeline for typing only: no loop
        "module loop: first_pl.fileio.m <-> first_pl.fileio.n",
        "module loop: first_pl.fileio.o <-> first_pl.fileio.p",
        "2 imports up a floor (1 at import), 1 room loops, 2 module loops",
    ]


def test_a_room_without_a_floor_is_named(layers, tmp_path):
    package = make_package(tmp_path, {"__init__.py": "", "extra.py": "import first_pl.data\n"})
    with pytest.raises(KeyError, match=r"first_pl.extra: room 'extra' has no floor"):
        layers.main(package)


def test_first_pl_has_no_upward_import_and_no_loop(layers, capsys):
    assert layers.main(SCRIPT.parents[1] / "first_pl") == 0
    assert capsys.readouterr().out.splitlines() == [
        "0 imports up a floor (0 at import), 0 room loops, 0 module loops"
    ]


def test_the_entry_point_imports_no_pipeline_and_no_command():
    """`first-pl fit` imports only what LightningCLI runs: the subcommands of
    `first_pl.runner.COMMANDS` are imported when chosen."""
    code = (
        "import sys, first_pl.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('first_pl.pipeline', "
        "'first_pl.commands', 'first_pl.planning'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SCRIPT.parents[1]
    ).stdout
    assert out.strip() == "[]"
