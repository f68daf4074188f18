"""scripts/install.sh installs with uv, which does not read pip's configuration: the index
options pip is set up with reach uv through scripts/pip_indexes.sh. These tests run it against a
pip config file and environment variables made here (no network, no install)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from first_pl_testing import CONFIGS

ROOT = CONFIGS.parent
PIP_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE")


def indexes(tmp_path: Path, config: str, **env: str) -> list[str]:
    """The flags pip_indexes.sh prints with only `config` as pip's config file and `env` set."""
    conf = tmp_path / "pip.conf"
    conf.write_text(config)
    environ = {k: v for k, v in os.environ.items() if k not in PIP_VARIABLES}
    # PIP_CONFIG_FILE is read after the machine's files; the user's own are hidden by pointing
    # HOME and XDG_CONFIG_DIRS at tmp_path
    environ.update(PIP_CONFIG_FILE=str(conf), HOME=str(tmp_path), XDG_CONFIG_DIRS=str(tmp_path),
                   **env)  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "scripts" / "pip_indexes.sh"), sys.executable],
                          env=environ, capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.split()


def test_config_file_indexes_become_flags(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    config = (f"[global]\nindex-url = https://mirror.example/simple\n"
              f"extra-index-url = https://a.example/simple file://{wheels}\n"
              f"find-links = {wheels}\n")  # fmt: skip
    assert indexes(tmp_path, config) == [
        "--index-url=https://mirror.example/simple",
        "--extra-index-url=https://a.example/simple",
        f"--extra-index-url=file://{wheels}",
        f"--find-links={wheels}",
    ]


def test_environment_wins_over_the_config_file(tmp_path):
    config = "[global]\nextra-index-url = https://from-config.example/simple\n"
    got = indexes(tmp_path, config, PIP_EXTRA_INDEX_URL="https://download.pytorch.org/whl/cpu")
    assert "--extra-index-url=https://download.pytorch.org/whl/cpu" in got
    assert not any("from-config" in flag for flag in got)


def test_missing_local_index_folder_is_left_out(tmp_path):
    config = (f"[global]\nextra-index-url = file://{tmp_path}/absent "
              f"https://kept.example/simple\n")  # fmt: skip
    assert indexes(tmp_path, config) == ["--extra-index-url=https://kept.example/simple"]


def test_uv_lock_pins_uv_in_with_hashes():
    lock = (ROOT / "requirements" / "uv.txt").read_text()
    pinned = (ROOT / "requirements" / "uv.in").read_text().strip()
    assert f"{pinned} \\" in lock and lock.count("--hash=sha256:") >= 1
