#!/usr/bin/env bash
# GPU host check, one command: install what is missing, run the GPU tests and the GPU
# frame-path benchmark, and record both in bench/RESULTS.md with the card named.
#
#   scripts/gpu-check.sh [--wheels DIR] [--site DIR] [--no-record]
#
# --wheels DIR  install from DIR only (pip --no-index), for hosts without a package index;
#               DIR holds pycuda's sdist and the wheels below
# --site DIR    where missing packages go (pip --target); default .cache/gpu-site. A site
#               left by an earlier run is reused, so pycuda is built once per host
# --no-record   print the benchmark; append nothing to bench/RESULTS.md
#
# Installs only what does not import already: pycuda (built from source against the CUDA
# toolkit found through nvcc, about 2.5 min), nvImageCodec + nvJPEG (extra `gpu`),
# cuda-bindings + NVRTC, and the few runtime dependencies the tests import. Nothing is
# installed into the system's site-packages. What cannot run here (no TensorRT: the engine
# itself) is reported as not run, never as passed. Budget: under 8 minutes on an H100.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WHEELS=""
SITE="$ROOT/.cache/gpu-site"
RECORD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS="$(cd "$2" && pwd)"; shift 2 ;;
        --site) SITE="$2"; shift 2 ;;
        --no-record) RECORD=0; shift ;;
        *) echo "gpu-check | unknown argument '$1'. Note: expected --wheels DIR, --site DIR, --no-record" >&2; exit 2 ;;
    esac
done
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
LOGS="$ROOT/.cache/gpu-check"
mkdir -p "$LOGS"
START=$(date +%s)
NOT_RUN=()
FAILED=()

say() { echo "[gpu-check $(($(date +%s) - START))s] $*"; }

# -- the card -------------------------------------------------------------------------
if ! CARD="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)" || [ -z "$CARD" ]; then
    echo "gpu-check | no NVIDIA GPU or driver (nvidia-smi failed). Note: expected a GPU host" >&2
    exit 1
fi
CUDA_VERSION="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)"
say "card: $CARD, CUDA $CUDA_VERSION, $($PY --version)"

# -- install what is missing ----------------------------------------------------------
pip_install() {  # pip_install [pip options] PACKAGES...
    local source=()
    if [ -n "$WHEELS" ]; then source=(--no-index --find-links "$WHEELS"); fi
    "$PY" -m pip install -q --disable-pip-version-check --no-cache-dir --no-compile \
        --target "$SITE" --upgrade "${source[@]}" "$@"
}
imports() { "$PY" -c "import $1" >/dev/null 2>&1; }

missing=()
imports pydantic || missing+=(pydantic pydantic-core annotated-types typing-inspection)
imports kafka || missing+=(kafka-python)
imports confluent_kafka || missing+=(confluent-kafka)
imports msgspec || missing+=(msgspec)
imports simplejpeg || missing+=(simplejpeg)
imports lmdb || missing+=(lmdb)
imports PIL || missing+=(pillow)  # PNG frames decode on the host (streamfer.streams.codecs.camera)
imports nvidia.nvimgcodec || missing+=(nvidia-nvimgcodec-cu13 nvidia-nvjpeg)
imports cuda.bindings.nvrtc || missing+=(cuda-bindings nvidia-cuda-nvrtc)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    pip_install --no-deps "${missing[@]}" || FAILED+=("install: ${missing[*]}")
fi
if ! imports pycuda.driver; then
    NVCC="$(command -v nvcc || true)"
    if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
    if [ -z "$NVCC" ]; then
        NOT_RUN+=("pycuda: no nvcc to build it with (CUDA toolkit)")
    else
        export CUDA_ROOT="${CUDA_ROOT:-$(dirname "$(dirname "$NVCC")")}"
        export PATH="$(dirname "$NVCC"):$PATH"
        say "building pycuda against $CUDA_ROOT (about 2.5 min)"
        imports pytools || pip_install --no-deps pytools platformdirs siphash24 mako >/dev/null
        if ! timeout 330 "$PY" -m pip install -q --disable-pip-version-check --no-cache-dir \
                --no-deps --no-build-isolation --target "$SITE" \
                ${WHEELS:+--no-index --find-links "$WHEELS"} pycuda \
                >"$LOGS/pycuda-build.log" 2>&1; then
            FAILED+=("pycuda build (log: .cache/gpu-check/pycuda-build.log)")
            tail -20 "$LOGS/pycuda-build.log"
        fi
    fi
fi
for module in pycuda.driver nvidia.nvimgcodec cuda.bindings.nvrtc pydantic kafka confluent_kafka \
        msgspec simplejpeg lmdb; do
    imports "$module" || NOT_RUN+=("$module does not import")
done
imports tensorrt || NOT_RUN+=("TensorRT is not installed: no engine inference here (the detection test ran the runner on the TensorRT double over real device memory; the benchmark has no inference column)")

# -- GPU tests --------------------------------------------------------------------------
say "GPU tests (pytest -m gpu tests/engines)"
timeout 240 "$PY" -m pytest -m gpu tests/engines -q -rs -p no:cacheprovider 2>&1 | tee "$LOGS/pytest.log"
TEST_RC=${PIPESTATUS[0]}
TEST_SUMMARY="$(grep -E '(passed|failed|skipped|error)' "$LOGS/pytest.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')"
[ "$TEST_RC" -eq 0 ] || FAILED+=("GPU tests (exit $TEST_RC): $TEST_SUMMARY")

# -- benchmark ----------------------------------------------------------------------------
say "benchmark (streamfer bench frames --preprocess gpu)"
BENCH_ARGS=(bench frames --preprocess gpu --limit-seconds 2 --repeats 3)
[ "$RECORD" -eq 1 ] || BENCH_ARGS+=(--no-record)
timeout 300 "$PY" -m streamfer.pipeline.cli "${BENCH_ARGS[@]}" 2>&1 | tee "$LOGS/bench.log"
BENCH_RC=${PIPESTATUS[0]}
[ "$BENCH_RC" -eq 0 ] || FAILED+=("benchmark (exit $BENCH_RC; log: .cache/gpu-check/bench.log)")

# -- summary ---------------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - START))
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
    echo
    echo "## GPU check — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo
    echo "- card: $CARD (CUDA $CUDA_VERSION)"
    echo "- commit: \`$COMMIT\`; python: $($PY --version 2>&1); took ${ELAPSED} s"
    echo "- command: \`scripts/gpu-check.sh${WHEELS:+ --wheels DIR}\`"
    echo "- GPU tests (\`pytest -m gpu tests/engines\`): ${TEST_SUMMARY:-no summary}"
    echo "- benchmark: \`python -m streamfer.pipeline.cli ${BENCH_ARGS[*]}\`: $([ "$BENCH_RC" -eq 0 ] && echo 'recorded above' || echo "failed (exit $BENCH_RC)")"
    for item in "${NOT_RUN[@]}"; do echo "- not run: $item"; done
    for item in "${FAILED[@]}"; do echo "- FAILED: $item"; done
} >"$LOGS/summary.md"
cat "$LOGS/summary.md"
[ "$RECORD" -eq 1 ] && cat "$LOGS/summary.md" >>"$ROOT/bench/RESULTS.md"
[ ${#FAILED[@]} -eq 0 ]
