#!/usr/bin/env bash
# The demo command: set up, then run the whole pipeline on the local broker and the CPU engine.
# Extra arguments go to `streamfer demo` (see `streamfer demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/streamfer demo "$@"
