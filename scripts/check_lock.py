"""Check that a virtual environment holds exactly the packages of the lock files, no more, no less.

Run by scripts/test.sh with the environment's own Python: a lock that was not applied (a package
upgraded by hand, one left over from another lock) fails CI instead of passing on a stack that
no fresh machine would get.

    python scripts/check_lock.py requirements/cpu.txt requirements/model.txt
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# Installed but not pinned by a lock: the project itself (editable) and the venv's own pip.
NOT_LOCKED = {"first-pl", "pip"}


def canonical(name: str) -> str:
    """PEP 503 normalised project name (`Foo_Bar` and `foo-bar` are one project)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(paths: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            match = PIN.match(line)
            if match:
                pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(set(pins) | set(have)):
        if name in NOT_LOCKED:
            continue
        want, got = pins.get(name), have.get(name)
        if want is None:
            lines.append(f"{name}=={got} is installed but in no lock file")
        elif got is None:
            lines.append(f"{name}=={want} is locked but not installed")
        elif want != got:
            lines.append(f"{name}: locked {want}, installed {got}")
    return lines


def main(paths: list[str]) -> int:
    pins, have = locked(paths), installed()
    problems = differences(pins, have)
    for line in problems:
        print(f"check_lock: {line}", file=sys.stderr)
    if problems:
        print(f"check_lock: {sys.prefix} does not match {', '.join(paths)}", file=sys.stderr)
        return 1
    print(f"check_lock: {len(pins)} packages in {sys.prefix} match {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
