"""The pipeline of one process: every configured stream, its engine, metrics and health.

Public API (what ``streamfer run`` and ``streamfer demo`` use)::

    from streamfer.pipeline.app import Pipeline
    from streamfer.pipeline.config import load_config

    with Pipeline(load_config("deploy/configs/fraud.yaml")) as pipe:   # start()
        pipe.wait_ready(timeout_s=30)        # engines loaded, the group joined
        snap = pipe.stats()["payments"]      # StreamStats, see pipeline.stats
        print(snap.consumed, snap.decided, snap.dropped, snap.dead_lettered,
              snap.lag, snap.p50_ms, snap.p99_ms)
    # __exit__ -> stop(drain=True): stop consuming, finish and publish what is in
    # flight, commit, close.

* ``Pipeline(config, *, worker_index=0, metrics=None, serve_http=None,
  runners=None, models_source=None)`` does no I/O. ``worker_index`` names the Kafka transactional
  id of exactly-once streams and offsets the metrics port
  (``metrics.port + worker_index``). ``serve_http`` (default
  ``config.metrics.enabled``) starts the ``/metrics /healthz /readyz`` server
  on ``metrics.host`` (default ``0.0.0.0``).
  ``runners`` maps model names to ready-made ``streamfer.engines.base.Runner`` objects
  (benchmarks, tests); other models get ``streamfer.engines.select.create_runner``.
  The pipeline activates and deactivates every runner it uses.
* ``start()`` makes sure every output and dead-letter topic exists
  (``streamfer.pipeline.topics``: created when ``kafka.create_topics``, else a missing
  one fails the start) and learns their ``max.message.bytes``, activates one
  runner per model (ONNX Runtime or TensorRT), starts the HTTP server, then
  every stream (consumer, producer, threads). A stream whose input topic does
  not exist yet waits for it, not ready (``streamfer.pipeline.inputs``), and
  creates its output topics once it appears.
* ``ready`` is true while engines are loaded, every stream has joined its
  consumer group (its assignment is known, maybe empty: a member without
  partitions is ready and idle), no partition state is being restored, the
  cluster is reachable, no input topic is missing and the pipeline is not stopping.
* ``stop(drain=True)``: stop polling, let in-flight records finish (decision
  published and acknowledged, drop or dead letter), commit, close; bounded by
  ``runtime.drain_timeout_s``. ``stop(drain=False)`` commits only what is
  already resolved and closes at once (the rest is consumed again after a
  restart: at-least-once). A runner whose engine thread is still inside
  inference after the join is left active (logged), never freed under it.
* ``wait_ready(timeout_s)`` polls ``ready`` and raises StreamferError naming
  what is missing; ``http_url`` is where ``/metrics`` is served (None when
  not serving), ``metrics_port`` the port this worker asks for.
* ``stats()`` -> ``{stream name: StreamStats}``: ``consumed``, ``decided``
  (decisions acknowledged), ``dropped`` and ``dead_lettered`` (dicts reason ->
  count), ``in_flight``, ``lag``, ``e2e_ms`` (recent record timestamp ->
  decision acked), ``p50_ms``, ``p99_ms``, ``percentile_ms(q)``, ``resolved``.
* Model versions (``streamfer.pipeline.reload``): ``models_source`` (default: the
  config given) is what ``request_reload(reason)`` reads the model section from
  (``streamfer run`` re-reads the file on SIGHUP); the reload runs in the background
  and swaps what the version policies pick now into every stream at a batch
  boundary, or refuses it and keeps the old one. ``reload_outcomes()`` lists every
  reload's result, ``serving()`` the version serving each model. A stream's
  ``shadow`` model (``streamfer.pipeline.shadow``) is loaded like any model and is
  not reloaded.
* ``failure`` is the first fatal error of a stream (the pipeline then stops
  itself, without draining); ``wait(timeout_s)`` blocks until it stopped.

Threads per stream (``streamfer.pipeline.runtime``): one consumer thread
(``pipeline.consumer``: poll, prepare, hand to the engine's queue, commits;
backpressure by not polling while that queue is full, so lag grows and memory does
not; a partition is paused only as a safety net, while too many of its records wait
for acknowledgement), a thread pool for processors that decode in one
(``runtime.preprocess_threads``, decode and letterbox release the GIL), one engine
thread (``pipeline.worker``: batcher, inference, results, hand-off to the producer);
the producer's delivery thread runs the acknowledgement callbacks that
resolve offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from streamfer.engines.base import Runner
from streamfer.errors import StreamferError
from streamfer.lifecycle import Lifecycle
from streamfer.pipeline.config import ModelConfig, PipelineConfig
from streamfer.pipeline.health import HealthServer, HealthState
from streamfer.pipeline.metrics import Metrics
from streamfer.pipeline.reload import ModelReloader, ReloadOutcome, Served, load
from streamfer.pipeline.runtime import StreamRuntime
from streamfer.pipeline.stats import StreamStats
from streamfer.pipeline.topics import ensure_output_topics, message_limits

log = logging.getLogger(__name__)


class Pipeline(Lifecycle, start="start", stop="stop", clean_flag="drain"):
    def __init__(
        self,
        config: PipelineConfig,
        *,
        worker_index: int = 0,
        metrics: Metrics | None = None,
        serve_http: bool | None = None,
        runners: Mapping[str, Runner] | None = None,
        models_source: Callable[[], Mapping[str, ModelConfig]] | None = None,
    ) -> None:
        self.config = config
        # what a reload reads the model section from (streamfer run: the config file again)
        self._models_source = models_source or (lambda: self.config.models)
        self._served: dict[str, Served] = {}
        self._retired: list[Runner] = []  # replaced runners a stopping stream kept
        self._reloader: ModelReloader | None = None
        self._given_runners = dict(runners or {})
        self.worker_index = worker_index
        self.metrics = metrics or Metrics(enabled=config.metrics.enabled)
        conditions = (f"{c}:{s.name}" for s in config.streams for c in ("partitions", "broker"))
        self.health = HealthState(("engines", *conditions))
        self._serve_http = config.metrics.enabled if serve_http is None else serve_http
        self._server: HealthServer | None = None
        self._runners: dict[str, Runner] = {}
        self._streams: dict[str, StreamRuntime] = {}
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._started = False
        self.failure: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        kafka = self.config.kafka
        log.debug(
            "starting %d stream(s) on %s through %s (worker %d)",
            len(self.config.streams), kafka.to_settings().describe(), kafka.client,
            self.worker_index,
        )  # fmt: skip
        try:
            ensure_output_topics(self.config)  # before loading engines: fail fast
            limits = message_limits(self.config)
            self._start_engines()
            if self._serve_http:
                self._server = HealthServer(
                    self.metrics,
                    self.health,
                    host=self.config.metrics.host,
                    port=self.metrics_port,
                )
                self._server.start()
            for stream in self.config.streams:
                runtime = StreamRuntime(
                    self.config,
                    stream,
                    self._runners[stream.model],
                    self.metrics,
                    self.health,
                    worker_index=self.worker_index,
                    on_fatal=self._on_fatal,
                    topic_limits=limits,
                    identity=self._served[stream.model].identity,
                    shadow=self._served[stream.shadow.model] if stream.shadow else None,
                )
                self._streams[stream.name] = runtime
                runtime.start()
            shadows = {s.shadow.model for s in self.config.streams if s.shadow is not None}
            self._reloader = ModelReloader(
                {n: m for n, m in self._served.items() if n not in shadows},
                self._consumers, self.metrics, self._models_source,
                on_swapped=self._swapped,
            )  # fmt: skip
            self._reloader.start()
        except BaseException:
            self.stop(drain=False)
            raise

    @property
    def metrics_port(self) -> int:
        """The port of this worker: ``metrics.port + worker_index`` (0 stays 0: a free port)."""
        base = self.config.metrics.port
        return base + self.worker_index if base else 0

    @property
    def http_url(self) -> str | None:
        return self._server.url if self._server is not None else None

    def _start_engines(self) -> None:
        for name, model in self.config.models.items():
            if not any(name in (s.model, s.shadow and s.shadow.model) for s in self.config.streams):
                continue  # a shadow's model is loaded as a primary's is, but never reloaded
            served = load(name, model, runner=self._given_runners.get(name))
            runner = served.runner
            self._served[name] = served
            self._runners[name] = runner
            self.metrics.model_info(model=name, version=served.label, engine=runner.info.kind)
            log.info("model %s | version %s on %s (%s)", name, served.label, runner.info.kind,
                     runner.info.device)  # fmt: skip
        self.health.set_ready("engines", True)

    # -- model versions (streamfer.pipeline.reload) --------------------------------------
    def request_reload(self, reason: str = "SIGHUP") -> bool:
        """Re-read the model section and swap in what its policies pick now, in the
        background; False when a reload is queued already (this one merges into it)."""
        if self._reloader is None:
            return False
        return self._reloader.request(reason)

    def reload_outcomes(self) -> list[ReloadOutcome]:
        """Every reload so far, per model: ok or failed, the version, why it failed."""
        return self._reloader.outcomes() if self._reloader is not None else []

    def serving(self) -> dict[str, str]:
        """Model name -> the version serving it now."""
        return {name: served.label for name, served in self._served.items()}

    def _consumers(self, model: str) -> list[StreamRuntime]:
        return [rt for rt in self._streams.values() if rt.stream.model == model]

    def _swapped(self, old: Served, new: Served, released: bool) -> None:
        self._runners[new.model] = new.runner
        self._served[new.model] = new
        if not released:
            self._retired.append(old.runner)

    def stop(self, drain: bool = True) -> None:
        """Stop every stream (draining in-flight work first when ``drain``); idempotent."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self.health.start_draining()
            if self._reloader is not None:  # no swap starts while the streams stop
                self._reloader.close()
            for runtime in self._streams.values():
                runtime.request_stop(drain=drain)
            timeout = self.config.runtime.drain_timeout_s
            for runtime in self._streams.values():
                runtime.join(timeout_s=timeout if drain else 5.0)
            stuck = {id(rt.runner) for rt in self._streams.values() if rt.engine_alive}
            runners = [*self._runners.items(), *((r.name, r) for r in self._retired)]
            for name, runner in runners:
                if id(runner) in stuck:  # still inside infer(): freeing it could crash
                    log.warning("model %s | engine thread still running; not deactivated", name)
                    continue
                runner.deactivate()
            if self._server is not None:
                self._server.close()
            self._stopped.set()

    def _on_fatal(self, name: str, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        log.error("stream %s | fatal: %s; stopping the pipeline", name, exc)
        threading.Thread(target=self.stop, kwargs={"drain": False}, daemon=True).start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the pipeline has stopped; False on timeout."""
        return self._stopped.wait(timeout_s)

    # -- state -------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Engines loaded, every stream in its group (maybe idle), not stopping (as /readyz)."""
        return not self._stopped.is_set() and self.health.is_ready()

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``ready`` until true; StreamferError naming what is missing on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if self.failure is not None:
                raise StreamferError(f"pipeline | failed while starting: {self.failure}")
            if time.monotonic() >= deadline:
                problems = ", ".join(self.health.readiness().problems)
                raise StreamferError(
                    f"pipeline | not ready after {timeout_s:g} s ({problems}). "
                    "Note: is the broker up and are the input topics there?"
                )
            time.sleep(0.05)  # poll interval

    def stats(self) -> dict[str, StreamStats]:
        return {name: runtime.stats() for name, runtime in self._streams.items()}
