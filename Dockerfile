# streamfer worker image (CPU: ONNX Runtime). Build from the repository root:
#   docker build -t streamfer:0.1.0 .
# GPU variant (TensorRT engines; needs NVIDIA's package index for tensorrt-cu13):
#   docker build -t streamfer:0.1.0-gpu \
#     --build-arg BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg EXTRAS=gpu --build-arg PIP_EXTRA_INDEX_URL=https://pypi.nvidia.com .
# Each process serves /metrics, /healthz and /readyz on metrics.port of its config
# (9464 in the shipped demo config; worker i of `run --workers N` on 9464 + i).
ARG BASE=python:3.11-slim-bookworm

# Stage 1: the wheel, built from the checkout (what a release ships).
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY streamfer ./streamfer
COPY deploy/kafka ./deploy/kafka
COPY deploy/configs ./deploy/configs
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /dist .

# Stage 2: the worker, with the wheel installed (no source tree in the image).
FROM ${BASE}
ARG EXTRAS=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/streamfer/bin:$PATH

# The CUDA base images come without Python; the slim image has it already.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/streamfer \
    && useradd --system --uid 10001 --home-dir /app streamfer

WORKDIR /app
COPY --from=wheel /dist /dist
RUN wheel="$(ls /dist/streamfer-*.whl)" && pip install "${wheel}${EXTRAS:+[$EXTRAS]}" && rm -rf /dist

USER streamfer
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)"
ENTRYPOINT ["streamfer"]
# a shipped config by name (streamfer/configs/demo.yaml inside the wheel)
CMD ["run", "--config", "demo"]
