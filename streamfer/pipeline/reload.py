"""Model versions swapped into a running pipeline, without a restart.

What serves a model is a :class:`Served`: the model's config section, the version
picked (``streamfer.engines.versions``), its active runner and the identity its
decisions carry. A :class:`ModelReloader` (one thread per pipeline) replaces it when
asked (SIGHUP: ``Pipeline.request_reload``) or when a poll (``models.<name>.poll_s``)
sees the version directory change:

1. the model section is read again (``models_source``: ``streamfer run`` re-reads the
   config file; nothing but ``models`` is taken from it) and the policy picks a
   version; the one serving already, unchanged on disk and in config, is left alone;
2. the new version is loaded on this thread (engine build or load through
   ``streamfer.engines.select.create_runner``), checked against each stream that uses
   it (same inputs as the processor feeds, the outputs its results read) and warmed
   up on a batch of the stream's real feed shapes; non-finite outputs refuse it;
3. each stream's engine thread takes it at its next batch boundary
   (``EngineWorker.offer_swap``: a one-slot queue), so one model decides a whole batch
   and the decisions name the version that made them; offsets, state and the outlet
   see nothing of it. The old runner is released once no engine thread holds it
   (``on_swapped(old, new, released)`` hears of it; not released: a stopping stream
   kept it, and the pipeline releases it when it stops).

A refused version (no ``model.onnx``, a corrupt file, inputs that do not fit, NaN on
the warm-up batch, a config that no longer parses) leaves the old one serving, logs
why and counts ``streamfer_model_reloads_total{result="failed"}``. A request while a
reload runs is queued (one slot; more requests meanwhile are merged into it, as the
queued one reads the newest state anyway).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamfer.engines.base import Runner, TensorSpec, random_feeds
from streamfer.engines.select import create_runner
from streamfer.engines.versions import LATEST, ModelVersion, listing, select
from streamfer.errors import EngineError, StreamferError
from streamfer.pipeline.decisions import ModelIdentity
from streamfer.pipeline.handoff import InferFn, Swap
from streamfer.threadnames import name_this_thread

if TYPE_CHECKING:
    from streamfer.pipeline.config import ModelConfig
    from streamfer.pipeline.metrics import Metrics

log = logging.getLogger(__name__)

WARMUP_ROWS = 8  # rows of the last real batch the new version is tried on
SWAP_TIMEOUT_S = 30.0  # for every engine thread to reach a batch boundary
_IDLE_S = 1.0


@dataclass(frozen=True)
class Served:
    """What serves one model: its config, the version on disk, the runner, the identity."""

    model: str
    config: ModelConfig
    version: ModelVersion
    runner: Runner
    identity: ModelIdentity

    @property
    def label(self) -> str:
        return self.identity.version


@dataclass(frozen=True)
class ReloadOutcome:
    """One reload of one model: ``ok`` (swapped in) or ``failed`` (``reason``)."""

    model: str
    result: str
    version: str | None
    reason: str = ""


class Consumer(Protocol):
    """A stream using a model, as the reloader sees it (``StreamRuntime``)."""

    @property
    def name(self) -> str: ...

    @property
    def engine_alive(self) -> bool: ...

    def wire(self, runner: Runner) -> InferFn:
        """How the stream's batches reach ``runner``; EngineError if they cannot."""

    def warmup_feeds(self) -> dict[str, np.ndarray] | None:
        """A recent real batch's feeds, if one ran."""

    def offer_swap(self, swap: Swap) -> bool: ...

    def withdraw_swap(self) -> Swap | None: ...

    def swapped(self, served: Served) -> None:
        """On the engine thread, at the swap: decisions from here on name ``served``."""


def load(model: str, config: ModelConfig, version: ModelVersion | None = None,
         runner: Runner | None = None) -> Served:  # fmt: skip
    """``model`` as ``config`` picks it (``version``: already picked), its runner (a new
    one from ``create_runner`` unless given) activated; released again if that fails."""
    version = version or select(config.path, config.version)
    runner = runner or create_runner(
        version.onnx,
        target=config.target,
        precision=config.precision,
        max_batch=config.max_batch,
        intra_op_threads=config.intra_op_threads,
    )
    try:
        runner.activate()
    except BaseException:
        runner.deactivate()
        raise
    return Served(model, config, version, runner, ModelIdentity.of(model, runner, version.name))


def _same_load(a: ModelConfig, b: ModelConfig) -> bool:
    """Both load the same runner (``poll_s`` is not part of it)."""
    return a.model_copy(update={"poll_s": None}) == b.model_copy(update={"poll_s": None})


def check_compatible(model: str, version: str, old: Runner, new: Runner) -> None:
    """The new runner takes the feeds (and batches) the old one takes and gives the
    outputs it gives."""
    if new.max_batch < old.max_batch:
        raise EngineError(
            f"model {model} version {version} | max_batch {new.max_batch} is below the "
            f"{old.max_batch} the streams were started with. Note: expected max_batch >= "
            f"{old.max_batch} (a smaller one needs a restart)"
        )
    want_in, got_in = _specs(old.input_specs), _specs(new.input_specs)
    if want_in != got_in:
        raise EngineError(
            f"model {model} version {version} | inputs {_describe(new.input_specs)} do not "
            f"fit the processor. Note: expected {_describe(old.input_specs)}, as the "
            "version serving now"
        )
    got_out = _specs(new.output_specs)
    missing = {k: v for k, v in _specs(old.output_specs).items() if got_out.get(k) != v}
    if missing:
        raise EngineError(
            f"model {model} version {version} | outputs {_describe(new.output_specs)} lack "
            f"{sorted(missing)}. Note: expected {_describe(old.output_specs)}, as the "
            "version serving now"
        )


def _specs(specs: Sequence[TensorSpec]) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    return {s.name: (s.dtype.name, s.shape[1:]) for s in specs}


def _describe(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name!r} {s.describe()}" for s in specs)


def warm_up(model: str, version: str, infer: InferFn, feeds: Mapping[str, np.ndarray]) -> None:
    """Run ``infer`` once; EngineError if it raises or any float output is not finite."""
    try:
        outputs = infer(dict(feeds))
    except Exception as exc:
        raise EngineError(
            f"model {model} version {version} | warm-up batch failed "
            f"({type(exc).__name__}: {exc}). Note: expected it to run the stream's feeds"
        ) from exc
    for name, out in outputs.items():
        arr = np.asarray(out)
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise EngineError(
                f"model {model} version {version} | output {name!r} holds {bad} NaN or "
                f"infinite values of {arr.size} on the warm-up batch of "
                f"{len(next(iter(feeds.values())))}. Note: expected finite scores"
            )


@dataclass(eq=False, slots=True)
class ModelReloader:
    """The thread that loads, checks and swaps in new model versions (module docstring)."""

    served: dict[str, Served]
    consumers: Callable[[str], Sequence[Consumer]]
    metrics: Metrics
    models_source: Callable[[], Mapping[str, ModelConfig]]
    on_swapped: Callable[[Served, Served, bool], None] = lambda old, new, free: None
    _models: dict[str, ModelConfig] = field(init=False)
    _seen: dict[str, tuple[tuple[str | None, int, int], ...]] = field(init=False)
    _requests: queue.Queue[str] = field(default_factory=lambda: queue.Queue(maxsize=1), init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _outcomes: list[ReloadOutcome] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._models = {n: s.config for n, s in self.served.items()}
        self._seen = {n: listing(s.config.path) for n, s in self.served.items()}

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def request(self, reason: str) -> bool:
        """Ask for a reload; False when one is queued already (this one merges into it)."""
        try:
            self._requests.put_nowait(reason)
        except queue.Full:
            log.info("models | reload (%s) merged into the one queued", reason)
            return False
        return True

    def outcomes(self) -> list[ReloadOutcome]:
        with self._lock:
            return list(self._outcomes)

    # -- the thread ------------------------------------------------------------------
    def _poll_s(self) -> float:
        polls = [m.poll_s for n, m in self._models.items() if n in self.served and m.poll_s]
        return min(polls, default=_IDLE_S)

    def _run(self) -> None:
        name_this_thread()
        while not self._stop.is_set():
            reason: str | None
            try:
                reason = self._requests.get(timeout=self._poll_s())
            except queue.Empty:
                reason = self._polled()
                if reason is None:
                    continue
            try:
                self.reload(reason)
            except Exception:  # never let one reload end the thread
                log.exception("models | reload (%s) failed", reason)

    def _polled(self) -> str | None:
        """A reason to reload when a polled model's versions changed on disk."""
        changed = []
        for name in self.served:
            cfg = self._models.get(name)
            if cfg is None or not cfg.poll_s:
                continue
            now = listing(cfg.path)
            if now != self._seen.get(name):
                self._seen[name] = now
                changed.append(name)
        return f"versions changed: {', '.join(changed)}" if changed else None

    def reload(self, reason: str) -> list[ReloadOutcome]:
        """Reload every model in use (on the calling thread); the outcome of each tried."""
        log.warning("models | reloading (%s)", reason)
        try:
            models = dict(self.models_source())
        except StreamferError as exc:
            return [self._failed(n, None, f"config not re-read: {exc}") for n in self.served]
        self._models = models
        out = []
        for name, current in list(self.served.items()):
            cfg = models.get(name)
            if cfg is None:
                log.warning("model %s | gone from the config; version %s keeps serving",
                            name, current.label)  # fmt: skip
                continue
            self._seen[name] = listing(cfg.path)
            outcome = self._reload_one(name, current, cfg)
            if outcome is not None:
                out.append(outcome)
        return out

    def _reload_one(self, name: str, current: Served, cfg: ModelConfig) -> ReloadOutcome | None:
        try:
            version = select(cfg.path, cfg.version)
        except EngineError as exc:
            return self._failed(name, None, str(exc))
        if version.signature() == current.version.signature() and _same_load(cfg, current.config):
            log.info("model %s | version %s unchanged", name, current.label)
            return None
        label = version.label(current.label if version.name is None else "")
        start = time.monotonic()
        try:
            new, infers = self._prepare(name, cfg, version, current)
        except Exception as exc:
            return self._failed(name, label, str(exc))
        if not self._swap(name, current, new, infers):
            new.runner.deactivate()
            return self._failed(name, new.label, "an engine thread did not take it in time")
        log.warning(
            "model %s | version %s serving (was %s; policy %s), swapped in %.0f ms",
            name, new.label, current.label, cfg.version or LATEST,
            (time.monotonic() - start) * 1e3,
        )  # fmt: skip
        self.metrics.model_reload(name, "ok")
        return self._record(ReloadOutcome(name, "ok", new.label))

    def _prepare(self, name: str, cfg: ModelConfig, version: ModelVersion, current: Served
                 ) -> tuple[Served, dict[str, InferFn]]:  # fmt: skip
        """Load, check and warm up the new version; its runner is released on failure."""
        try:
            new = load(name, cfg, version)
        except Exception as exc:  # ONNX Runtime's own errors for a corrupt file, too
            raise EngineError(
                f"{version.onnx} | cannot be loaded ({type(exc).__name__}: {exc}). "
                "Note: expected a complete, valid ONNX model"
            ) from exc
        try:
            check_compatible(name, new.label, current.runner, new.runner)
            infers = {}
            for consumer in self.consumers(name):
                infer = consumer.wire(new.runner)
                feeds = consumer.warmup_feeds() or random_feeds(new.runner.input_specs, 1)
                feeds = {k: v[:WARMUP_ROWS] for k, v in feeds.items()}
                warm_up(name, new.label, infer, feeds)
                infers[consumer.name] = infer
            return new, infers
        except BaseException:
            new.runner.deactivate()
            raise

    def _swap(self, name: str, old: Served, new: Served, infers: dict[str, InferFn]) -> bool:
        """Hand ``new`` to every stream's engine thread; wait until each took it."""
        swaps: list[tuple[Consumer, Swap]] = []
        for consumer in self.consumers(name):
            swap = Swap(infers[consumer.name], partial(consumer.swapped, new))
            if consumer.offer_swap(swap):  # only this thread offers: the slot is free
                swaps.append((consumer, swap))
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        for consumer, swap in swaps:
            while not swap.done.wait(0.05):
                if time.monotonic() > deadline or not consumer.engine_alive:
                    break
        late = [c for c, s in swaps if not s.done.is_set() and c.withdraw_swap() is not None]
        if late and len(late) == len(swaps):
            return False  # none took it: the old version serves everywhere
        self.served[name] = new
        if not late:
            old.runner.deactivate()  # no engine thread holds it any more
        else:  # stopping streams kept the old runner; released when the pipeline stops
            log.warning("model %s | %s kept version %s (stopping)", name,
                        ", ".join(c.name for c in late), old.label)  # fmt: skip
        self.metrics.model_info(model=name, version=new.label, engine=new.runner.info.kind)
        self.on_swapped(old, new, not late)
        return True

    def _failed(self, name: str, version: str | None, reason: str) -> ReloadOutcome:
        current = self.served.get(name)
        serving = current.label if current is not None else "?"
        log.error("model %s | version %s refused: %s; version %s keeps serving",
                  name, version or "?", reason, serving)  # fmt: skip
        self.metrics.model_reload(name, "failed")
        return self._record(ReloadOutcome(name, "failed", version, reason))

    def _record(self, outcome: ReloadOutcome) -> ReloadOutcome:
        with self._lock:
            self._outcomes.append(outcome)
        return outcome
