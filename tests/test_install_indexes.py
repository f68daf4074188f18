"""scripts/install.sh installs with uv, which does not read pip's configuration: the index
options pip is set up with reach uv through scripts/pip_indexes.sh, and pip installs the same
locks where uv fails. These tests run the scripts against a pip config file, environment
variables and a fake interpreter made here (no network, no install)."""

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


FAKE_PYTHON = r"""#!/bin/bash
# A stand-in for python3.11 and the environment's python: logs what install.sh asks of pip and
# uv, and plays uv as $FAKE_UV says (works; fails: installs but exits 1; missing: pip cannot get it)
case "$1" in
  -c) echo 3.11 ;;
  -m) shift; module=$1; shift
      case "$module" in
        venv) mkdir -p "$1/bin" && cp "$0" "$1/bin/python" ;;
        pip) echo "pip $*" >> "$FAKE_LOG"
             [[ "$1" == config ]] && { echo "global.extra-index-url='https://mirror.example/simple'"; exit 0; }
             target=""; previous=""
             for arg in "$@"; do [[ "$previous" == --target ]] && target=$arg; previous=$arg; done
             if [[ -n "$target" ]]; then
                 [[ "$FAKE_UV" == missing ]] && exit 1
                 mkdir -p "$target/bin"
                 status=0; [[ "$FAKE_UV" == fails ]] && status=1
                 printf '#!/bin/bash\necho "uv $*" >> "$FAKE_LOG"\nexit %s\n' "$status" > "$target/bin/uv"
                 chmod +x "$target/bin/uv"
             fi ;;
      esac ;;
esac
"""


def install(tmp_path: Path, uv: str) -> tuple[str, list[str]]:
    """scripts/install.sh in a copy of the repository's scripts and locks, with a fake Python
    (no download, nothing installed): its stderr and the pip / uv calls it made."""
    import shutil

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("install.sh", "torch_flavour.sh", "pip_indexes.sh"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    shutil.copytree(ROOT / "requirements", repo / "requirements")
    shutil.copy(ROOT / "setup.cfg", repo / "setup.cfg")
    python = tmp_path / "python3.11"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    log = tmp_path / "calls.log"
    environ = {k: v for k, v in os.environ.items() if k not in PIP_VARIABLES}
    environ.update(PYTHON=str(python), FIRST_PL_TORCH="cpu", FIRST_PL_VENV=str(tmp_path / "venv"),
                   FAKE_LOG=str(log), FAKE_UV=uv)  # fmt: skip
    done = subprocess.run(["bash", str(repo / "scripts" / "install.sh")], env=environ,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert (tmp_path / "venv" / ".first-pl-lock").is_file()  # stamped only once installed
    return done.stderr, log.read_text().splitlines()


def test_install_sh_installs_the_locks_with_uv_and_pip_s_indexes(tmp_path):
    stderr, calls = install(tmp_path, "works")
    (locks,) = [c for c in calls if c.startswith("uv ") and "-r requirements/cpu.txt" in c]
    assert "--require-hashes" in locks and "--no-deps" in locks and "-r requirements/model.txt" in locks
    assert "--extra-index-url=https://mirror.example/simple" in locks
    assert not any(c.startswith("pip install") and "cpu.txt" in c for c in calls)
    assert "installing them with pip" not in stderr


def test_install_sh_falls_back_to_pip_when_uv_fails_or_is_missing(tmp_path):
    for uv in ("fails", "missing"):
        stderr, calls = install(tmp_path / uv, uv)
        assert "install.sh: uv could not install the locks (above); installing them with pip" in stderr
        (locks,) = [c for c in calls if c.startswith("pip install") and "cpu.txt" in c]
        assert "--require-hashes" in locks and "-r requirements/model.txt" in locks
        assert any(c.startswith("pip install") and "-e ." in c for c in calls)
