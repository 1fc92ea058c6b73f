# streamfer worker image (CPU: ONNX Runtime). Build from the repository root:
#   docker build -t streamfer:0.1.0 .
# GPU image (TensorRT, pycuda built against the CUDA headers): Dockerfile.gpu.
#
# Run: `docker run streamfer:0.1.0` runs `streamfer run --config $STREAMFER_CONFIG`
# (default: the shipped demo config); any arguments replace that and go to `streamfer`
# (`docker run streamfer:0.1.0 produce transactions ...`). Each process serves /metrics,
# /healthz and /readyz on metrics.port of its config; the HEALTHCHECK reads that port from
# the config named by $STREAMFER_CONFIG, so set it to the config you run.
# /app/models: the reference models (fraud, sensor, camera) of the installed wheel.
# /app/examples: the example plug-ins' sources; telemetry-anomaly is installed.

# Stage 1: the wheels, built from the checkout (what a release ships).
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY streamfer ./streamfer
COPY deploy/kafka ./deploy/kafka
COPY deploy/configs ./deploy/configs
COPY examples ./examples
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /dist . ./examples/telemetry-anomaly

# Stage 2: the worker, with the wheels installed (no source tree in the image).
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/streamfer/bin:$PATH \
    STREAMFER_CONFIG=demo

RUN python3 -m venv /opt/streamfer \
    && useradd --system --uid 10001 --home-dir /app streamfer

WORKDIR /app
COPY --from=wheel /dist /dist
RUN pip install /dist/streamfer-*.whl /dist/streamfer_example_telemetry_anomaly-*.whl \
    && rm -rf /dist \
    && ln -s "$(python3 -c 'import os, streamfer.models as m; print(os.path.dirname(m.__file__))')" \
        /app/models
COPY --from=wheel /src/examples /app/examples

USER streamfer
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
    CMD ["python3", "-c", "import os, urllib.request; from streamfer.pipeline.config import config_file, load_config; port = load_config(config_file(os.environ['STREAMFER_CONFIG'])).metrics.port; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
# No arguments: run $STREAMFER_CONFIG. Arguments: `streamfer <arguments>`. exec: streamfer
# is PID 1 and gets SIGTERM (which drains).
ENTRYPOINT ["/bin/sh", "-c", "[ $# -gt 0 ] || set -- run --config \"$STREAMFER_CONFIG\"; exec streamfer \"$@\"", "streamfer"]
CMD []
