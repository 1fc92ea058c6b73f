#!/usr/bin/env bash
# The crash, state and failure end-to-end tests, N rounds in a row (default 10) under CPU load on
# every core, stopping at the first failure; one summary line per round with its duration.
#
#   scripts/stress_e2e.sh [N] [pytest args...]      e.g. scripts/stress_e2e.sh 3 -k kill
#
# Load: stress-ng (or stress) when on PATH (`apt-get install -y stress-ng`), else one Python
# busy loop per core; STRESS_CPUS sets how many workers (default: the number of cores). The load
# starts before the first round and is stopped on exit, also on failure or Ctrl-C. Uses the broker
# at $STREAMFER_BOOTSTRAP (default 127.0.0.1:9092; the test fixtures never start their own then).
# A failed round's pytest output is printed and kept; exit status: the failed round's.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-10}
shift || true
case "$rounds" in '' | *[!0-9]*)
    echo "stress_e2e | round count $rounds is not a number. Note: expected e.g. 10" >&2
    exit 2
    ;;
esac
export STREAMFER_BOOTSTRAP=${STREAMFER_BOOTSTRAP:-127.0.0.1:9092}
python=${PYTHON:-.venv/bin/python}
cpus=${STRESS_CPUS:-$(nproc)}
tests=(
    tests/pipeline/test_e2e_crash.py
    tests/pipeline/test_e2e_state.py
    tests/pipeline/test_failures.py
    "tests/pipeline/test_example_telemetry_anomaly.py::test_the_baselines_survive_kill_9_and_the_verdicts_equal_an_uninterrupted_run"
)
logs=$(mktemp -d "${TMPDIR:-/tmp}/stress-e2e.XXXXXX")
load_pids=()

start_load() {
    if command -v stress-ng >/dev/null; then
        stress-ng --cpu "$cpus" --quiet &
        load_pids+=("$!")
        echo "load: stress-ng --cpu $cpus"
    elif command -v stress >/dev/null; then
        stress --cpu "$cpus" --quiet &
        load_pids+=("$!")
        echo "load: stress --cpu $cpus"
    else
        for _ in $(seq "$cpus"); do
            "$python" -c 'while True: pass' &
            load_pids+=("$!")
        done
        echo "load: $cpus Python busy loops"
    fi
}

stop_load() {
    local pid
    for pid in "${load_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${load_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    load_pids=()
}
trap stop_load EXIT
trap 'exit 130' INT TERM

echo "stress_e2e: $rounds round(s) of ${#tests[@]} test targets, broker $STREAMFER_BOOTSTRAP, logs $logs"
start_load
total_start=$(date +%s.%N)
for round in $(seq "$rounds"); do
    log="$logs/round-$round.log"
    start=$(date +%s.%N)
    status=0
    "$python" -m pytest -q -x -p no:cacheprovider "${tests[@]}" "$@" >"$log" 2>&1 || status=$?
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$log" | tail -1 | sed -E 's/^=+ | =+$//g' || true)
    if [ "$status" -ne 0 ]; then
        printf 'round %d/%d: FAILED in %.0f s (%s)\n' "$round" "$rounds" "$seconds" "$summary"
        tail -n 60 "$log"
        echo "stress_e2e: stopped at round $round; full output in $log" >&2
        exit "$status"
    fi
    printf 'round %d/%d: passed in %.0f s (%s)\n' "$round" "$rounds" "$seconds" "$summary"
    rm -f "$log"
done
printf 'stress_e2e: %d round(s) passed in %.0f s\n' "$rounds" "$(echo "$(date +%s.%N) - $total_start" | bc)"
rmdir "$logs" 2>/dev/null || true
