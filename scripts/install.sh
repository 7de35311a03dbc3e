#!/usr/bin/env bash
# Install cnnzoo from this checkout (editable), with the optional extras named as arguments:
#   scripts/install.sh            what the main job needs
#   scripts/install.sh test       also what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [ "$#" -gt 0 ]; then
  extras="[$(IFS=,; echo "$*")]"
fi

# pip's default build isolation downloads setuptools into a scratch environment on every install,
# so it fails offline even when everything is already installed. A setuptools of our own that can
# build editable wheels by itself (70.1 or later) builds this package just the same, offline too.
build_flags=()
if python3 - <<'PY' 2>/dev/null
import sys
import setuptools
major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
sys.exit(0 if (major, minor) >= (70, 1) else 1)
PY
then
  build_flags=(--no-build-isolation)
fi

python3 -m pip install --quiet "${build_flags[@]}" -e ".${extras}"
