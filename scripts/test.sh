#!/usr/bin/env bash
# The test command of the README (and of CI): install what is missing, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
debian_packages prometheus wrk openssl
mlserver_venv  # a real third-party model server for tests/mlserver (skipped without it, not in CI)

.venv/bin/ruff check meshlab tests analysis loadtests benchmarks examples istio_manifests
.venv/bin/ruff format --check meshlab
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
