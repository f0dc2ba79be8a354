#!/usr/bin/env bash
# Runs the whole test suite (slow, browser and PostgreSQL tests included), setting up first.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system-deps.sh
if [ -z "${ARCHLAB_TEST_POSTGRES_URL:-}" ]; then
  # a server this script starts is stopped when it ends (tests pass or fail, or Ctrl-C);
  # one that was already running is left alone
  if ! bash scripts/postgres.sh status; then
    trap 'bash scripts/postgres.sh stop || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  ARCHLAB_TEST_POSTGRES_URL=$(bash scripts/postgres.sh 2>/dev/null || true)
  export ARCHLAB_TEST_POSTGRES_URL
fi
export ARCHLAB_PROGRESS=0 PYTHONHASHSEED=0
# two pytest-xdist workers (a wait-bound suite: subprocesses, servers, browsers), each with one
# torch/OpenMP thread unless told otherwise (two workers' thread pools on two cores oversubscribe
# them: the demo's test took 4-5x as long beside another torch test); ARCHLAB_TEST_WORKERS=0 runs
# it in this process. Tests that share a PostgreSQL database or burn the CPUs on purpose stay one
# at a time (tests/conftest.py)
workers="${ARCHLAB_TEST_WORKERS:-2}"
if [ "$workers" != "0" ]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
.venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@"
