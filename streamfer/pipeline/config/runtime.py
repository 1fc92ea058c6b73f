"""The ``metrics`` and ``runtime`` sections: the HTTP port of the process and its stream
threads' limits and timeouts."""

from __future__ import annotations

from pydantic import Field

from streamfer.pipeline.config.base import Frozen
from streamfer.pipeline.metrics import DEFAULT_PORT

PREPROCESS_THREADS = 2  # of each stream's preprocessing pool, unless runtime says otherwise


class MetricsConfig(Frozen):
    """Where ``/metrics``, ``/healthz`` and ``/readyz`` are served (one HTTP port).

    ``host`` is the address it binds. The default, ``0.0.0.0`` (every IPv4
    interface), is what a Prometheus server or a Kubernetes probe on another
    machine or pod needs to reach it; the endpoints carry counters and
    timings, never records or secrets. Bind ``127.0.0.1`` where only local
    scrapers may read them (a shared host), or one interface's address.
    ``streamfer run --metrics-host`` overrides it. ``port`` 0 picks a free port;
    worker *i* of ``--workers`` uses ``port + i``.
    """

    enabled: bool = True
    """Serve /metrics, /healthz and /readyz."""
    host: str = Field(default="0.0.0.0", min_length=1)
    """Address the HTTP port binds; 127.0.0.1 keeps it local. streamfer run --metrics-host overrides
    it."""
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz; 0 picks a free one; worker i of --workers uses port +
    i."""


class RuntimeConfig(Frozen):
    """``max_in_flight``: records a stream holds between poll and engine (more pauses
    fetching); ``broker_timeout_s``: readiness turns false once the cluster has been
    unreachable (no fetch, commit, acknowledgement or broker report) that long."""

    preprocess_threads: int = Field(default=PREPROCESS_THREADS, ge=1, le=64)
    """Threads of each stream's preprocessing pool (decoding records)."""
    max_in_flight: int = Field(default=2000, ge=1)
    """Records a stream holds between poll and engine; more pauses fetching."""
    commit_interval_ms: int | None = Field(default=None, ge=1)
    """How often resolved offsets are committed, for every stream; unset: each stream's latency
    profile (a stream's latency.commit_interval_ms wins)."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """On stop (SIGTERM) or a partition revoke, how long records in flight may take to finish and
    commit."""
    broker_timeout_s: float = Field(default=10.0, gt=0)
    """Readiness turns false once the cluster has been unreachable this long."""
