#!/usr/bin/env bash
# Create .venv (once) and install streamfer with the given extras, e.g. `scripts/setup.sh dev`.
# Needs Python 3.11+, and for the local broker Java 17+ and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)" >&2
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
echo "setup: installing streamfer[$extras] into .venv" >&2
.venv/bin/python -m pip install --quiet --editable ".[$extras]"
if [[ ",$extras," == *",dev,"* ]]; then
    # the tests run the worked plug-in example as an installed package (entry point and all)
    echo "setup: installing the plug-in example examples/telemetry-anomaly into .venv" >&2
    .venv/bin/python -m pip install --quiet --editable examples/telemetry-anomaly
fi
for tool in java mvn; do
    command -v "$tool" >/dev/null || echo "setup: warning: $tool not found; the local Kafka broker needs Java 17+ and Maven" >&2
done
