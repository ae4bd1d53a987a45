#!/usr/bin/env bash
# The main job of the README: install what is missing, then run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
exec .venv/bin/meshlab demo "$@"
