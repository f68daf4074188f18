"""The subcommand registry: import paths that resolve to a documented function or class,
commands that never import one another, and a `--help` for every subcommand."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import first_pl.commands
from first_pl.cli import main
from first_pl.runner import COMMANDS, command_target

COMMANDS_DIR = Path(first_pl.commands.__file__).parent
# Not commands: the model card `export` writes; the checks of what an output may replace
# (extract, import/export-store).
SHARED_HELPERS = {
    "first_pl.commands.model_card",
    "first_pl.commands.replace",
}


def test_every_subcommand_is_registered_by_the_path_of_its_function_or_class() -> None:
    for name in COMMANDS:
        target = command_target(name)
        assert inspect.isfunction(target) or inspect.isclass(target), name
        assert target.__module__.startswith("first_pl."), name
        assert target.__doc__, f"{name}: its docstring is the subcommand's --help text"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_command_imports_another() -> None:
    modules = {f"first_pl.commands.{p.stem}" for p in COMMANDS_DIR.glob("*.py") if p.stem != "__init__"}
    commands = modules - SHARED_HELPERS
    for path in COMMANDS_DIR.glob("*.py"):
        others = imported_modules(path) & (commands - {f"first_pl.commands.{path.stem}"})
        assert not others, f"{path.name} imports the command(s) {sorted(others)}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: first-pl {name} ")
