#!/usr/bin/env bash
# Set koopnb up in a virtual environment inside the repository (.venv, ignored by git), then run
#   bash dev.sh lab    JupyterLab on notebooks/ (the main job)
#   bash dev.sh test   the whole test suite (extra arguments go to pytest)
# Needs only Python 3.11 with pip and venv, Node.js with npm (to build the JupyterLab extension) and,
# for the browser tests, Debian's chromium (installed by the tests with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
case "${1:-}" in
  lab)
    exec .venv/bin/jupyter lab notebooks/
    ;;
  test)
    shift
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: bash dev.sh lab | bash dev.sh test [pytest arguments]" >&2
    exit 2
    ;;
esac
