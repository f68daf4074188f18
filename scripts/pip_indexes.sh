#!/usr/bin/env bash
# Print, one per line, the package-index options that pip is set up with, as flags that both pip
# and uv take (--index-url=, --extra-index-url=, --find-links=): scripts/install.sh hands them to
# uv, which does not read pip's configuration. The environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# PIP_FIND_LINKS) wins over pip's config files, and [install] over [global], as they do for pip;
# a file:// index whose folder does not exist is left out (pip skips it with a warning, uv would
# stop).
#
#   bash scripts/pip_indexes.sh PYTHON    # PYTHON: an interpreter with pip (its config is read)
set -euo pipefail
python=${1:?usage: pip_indexes.sh PYTHON}
# `pip config list` shows every source pip reads, the environment as ":env:"; take each key from
# the first of environment, [install], [global] that sets it
listing=$("$python" -m pip config list 2>/dev/null || true)
for key in index-url extra-index-url find-links; do
    values=""
    for section in :env: install global; do
        line=$(awk -v want="$section.$key=" 'index($0, want) == 1 { print; exit }' <<< "$listing")
        if [[ -n "$line" ]]; then values=${line#*=\'}; values=${values%\'}; break; fi
    done
    for value in $values; do
        [[ "$value" == file://* && ! -e "${value#file://}" ]] || echo "--$key=$value"
    done
done
