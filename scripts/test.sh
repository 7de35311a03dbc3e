#!/usr/bin/env bash
# Everything the tests need, then the tests: cnnzoo with its `test` extra, Debian's Chromium for the
# HTML-report test (installed when missing), then pytest. Arguments go to pytest, e.g.
#   scripts/test.sh tests/models -x
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh test

if ! command -v chromium >/dev/null 2>&1; then
  sudo=()
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  fi
  if command -v apt-get >/dev/null 2>&1 \
      && "${sudo[@]}" apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null; then
    :
  else
    echo "warning: could not install chromium (apt-get install chromium); the HTML-report browser test will fail" >&2
  fi
fi

# Spinning OpenMP threads starve each other on a busy machine (see src/cnnzoo/cli/__init__.py).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec python3 -m pytest -q "$@"
