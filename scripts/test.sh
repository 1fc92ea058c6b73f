#!/usr/bin/env bash
# The test command: set up, lint, type-check, run every test tier against the real local broker.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k batcher`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/install-prometheus.sh
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
status=0
.venv/bin/python -m pytest -ra "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure here" >&2
    exit 1
fi
exit "$status"
