#!/usr/bin/env bash
# Set koopnb up in a virtual environment inside the repository (.venv, ignored by git), then run
#   bash dev.sh lab    JupyterLab on notebooks/ (the main job; extra arguments go to jupyter lab)
#   bash dev.sh test   the whole test suite (extra arguments go to pytest)
# Needs only Python 3.11 with pip and venv, Node.js with npm (to build the JupyterLab extension) and,
# for the browser tests, Debian's chromium (installed by the tests with apt-get when missing).
#
# The lab listens on 127.0.0.1:8888 unless KOOPNB_LAB_IP / KOOPNB_LAB_PORT say otherwise (0.0.0.0 for every
# interface, e.g. in a container); it never opens a browser, so it works on a machine without a display, and
# runs as root too (--allow-root is passed only when the effective user is root). It prints the address with
# its token (JUPYTER_TOKEN, when set, is used as the token). One Ctrl-C stops it.
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
    shift
    ip=${KOOPNB_LAB_IP:-127.0.0.1}
    port=${KOOPNB_LAB_PORT:-8888}
    token=${JUPYTER_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')}
    root=()
    if [ "$(id -u)" = 0 ]; then
      root=(--allow-root)
    fi
    host=$ip
    case "$ip" in 0.0.0.0|::|'') host=127.0.0.1 ;; esac
    echo
    echo "koopnb: JupyterLab is starting on notebooks/. When it is up, open"
    echo "    http://$host:$port/lab?token=$token"
    echo "koopnb: press Ctrl-C once to stop it."
    echo
    # A fixed port (no retries) keeps the address printed above true: a busy port is an error, not a surprise.
    exec .venv/bin/jupyter lab --no-browser "${root[@]}" --ServerApp.ip="$ip" --ServerApp.port="$port" \
      --ServerApp.port_retries=0 --IdentityProvider.token="$token" --ServerApp.answer_yes=True \
      --ServerApp.root_dir=notebooks "$@"
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
