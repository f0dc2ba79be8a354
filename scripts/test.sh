#!/usr/bin/env bash
# Runs the whole test suite (slow, browser and PostgreSQL tests included), setting up first.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system-deps.sh
if [ -z "${ARCHLAB_TEST_POSTGRES_URL:-}" ]; then
  ARCHLAB_TEST_POSTGRES_URL=$(bash scripts/postgres.sh 2>/dev/null || true)
  export ARCHLAB_TEST_POSTGRES_URL
fi
export ARCHLAB_PROGRESS=0 PYTHONHASHSEED=0
exec .venv/bin/python -m pytest "$@"
