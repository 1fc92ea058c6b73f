"""The ``streams`` entries: one input topic -> one model -> one output topic, with its
batching, latency, shadow model and per-kind sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from streamfer.pipeline.config.base import Frozen
from streamfer.pipeline.config.model import MAX_BATCH
from streamfer.pipeline.config.records import (
    DeadLettersConfig,
    FramesConfig,
    LimitsConfig,
    PreprocessConfig,
    WindowsConfig,
)
from streamfer.pipeline.config.state import StateConfig
from streamfer.pipeline.config.thresholds import (
    DetectionThresholds,
    FraudThresholds,
    SensorThresholds,
)
from streamfer.pipeline.latency import PROFILES, LatencyKnobs, LatencyProfile, default_profile
from streamfer.streams.state.changelog import changelog_topic

Kind = Literal["camera", "sensor", "sensor-sample", "transaction", "custom"]
Mode = Literal["realtime", "replay"]
Delivery = Literal["at_least_once", "exactly_once"]
DEFAULT_BATCH = 32  # records in one engine batch, unless batching.max_batch says otherwise


class BatchingConfig(Frozen):
    max_batch: int = Field(default=DEFAULT_BATCH, ge=1, le=MAX_BATCH)
    """Most records in one engine batch."""
    max_wait_ms: float | None = Field(default=None, ge=0)
    """Longest a record waits for its batch to fill (less when its deadline is near); unset: the
    stream's latency profile."""


class LatencyConfig(Frozen):
    """A stream's latency profile and the keys that override it (``streamfer.pipeline.latency``).

    Every key left out comes from the profile; a pipeline-wide key (``producer.linger_ms``,
    ``consumer.fetch_max_wait_ms``, ``runtime.commit_interval_ms``) sits between: it wins
    over the profile, a key here wins over it. The batch wait is ``batching.max_wait_ms``.
    """

    profile: LatencyProfile | None = None
    """low, balanced or throughput: the waits of the producer, batcher, fetch and commit; unset: low
    for transaction and camera streams, balanced otherwise."""
    linger_ms: int | None = Field(default=None, ge=0)
    """How long the stream's producer waits to fill a batch of decisions."""
    fetch_max_wait_ms: int | None = Field(default=None, ge=0)
    """Longest the broker holds the stream's fetch until fetch_min_bytes arrive."""
    fetch_min_bytes: int | None = Field(default=None, ge=1)
    """Bytes the broker waits for (up to fetch_max_wait_ms) before answering."""
    commit_interval_ms: int | None = Field(default=None, ge=1)
    """How often resolved offsets commit; under exactly_once the transaction commit, which is when
    decisions become visible to read_committed readers."""


class ShadowConfig(Frozen):
    """A second model scoring the stream's batches beside the primary, for comparison.

    It scores (a ``sample`` of the rows of) each batch after the primary's decisions are
    handed to the outlet, on its own thread behind a bounded queue (``max_backlog``
    batches): the primary's latency, commits and delivery do not wait for it. Its
    decisions go to ``output_topic`` (the same source coordinates, its own model
    identity), best effort and outside any transaction: a shadow that fails or falls
    behind is counted and shed, and a record consumed again (a restart, an aborted
    transaction) may be shadow-scored again.
    ``model`` names a model of ``models`` with the primary's inputs and outputs.
    """

    model: str = Field(min_length=1)
    """The shadow model, a model of `models`."""
    output_topic: str = Field(min_length=1)
    """Side topic for the shadow's decisions (best effort)."""
    sample: float = Field(default=1.0, ge=0, le=1)
    """Share of each batch's rows the shadow scores."""
    max_backlog: int = Field(default=64, ge=1, le=10_000)
    """Batches queued for the shadow; more are shed."""


class StreamConfig(Frozen):
    """One input topic -> one model -> one output topic.

    ``kind: custom`` runs the plug-in ``processor`` (``package.module:Name``, or the name
    of a ``streamfer.processors`` entry point) on the stream's records; a built-in kind
    may put a plug-in ``postprocessor`` in place of its own results step. Either gets
    ``processor_config`` (free-form; checked by the plug-in, see
    ``streamfer.pipeline.processors.plugins``).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """The stream's name, in logs, metrics labels and decisions."""
    kind: Kind
    """What the records are: a built-in kind, or custom for a processor plug-in."""
    processor: str | None = Field(default=None, min_length=1)
    """kind: custom: the plug-in, package.module:Name or a streamfer.processors entry point name."""
    postprocessor: str | None = Field(default=None, min_length=1)
    """Built-in kinds: a plug-in that replaces the kind's results step."""
    processor_config: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings handed to the plug-in and checked by it."""
    input_topic: str = Field(min_length=1)
    """Topic the stream consumes."""
    output_topic: str = Field(min_length=1)
    """Topic its decisions go to."""
    dlq_topic: str | None = None
    """Dead-letter topic; unset: <input_topic>.dlq."""
    model: str
    """Name of a model under models."""
    mode: Mode = "realtime"
    """realtime drops per the deadline settings; replay drops nothing (backfills)."""
    delivery: Delivery = "at_least_once"
    """exactly_once commits decisions and offsets in one Kafka transaction."""
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    deadline_ms: float | None = Field(default=None, gt=0)
    """A record's time budget from its event time; past it, a camera frame is stale."""
    drop_stale: bool | None = None
    """Drop records past deadline_ms before the engine; unset: true for camera streams in realtime
    mode."""
    latest_per_key: bool = False
    """Keep only the newest record per key waiting for the engine (older ones dropped as
    superseded)."""
    fraud: FraudThresholds = Field(default_factory=FraudThresholds)
    detection: DetectionThresholds = Field(default_factory=DetectionThresholds)
    sensor: SensorThresholds = Field(default_factory=SensorThresholds)
    frames: FramesConfig = Field(default_factory=FramesConfig)
    dead_letters: DeadLettersConfig = Field(default_factory=DeadLettersConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    shadow: ShadowConfig | None = None
    """A second model scoring the same batches to a side topic (docs/models.md)."""

    @property
    def decision_kind(self) -> str:
        """The kind of its decisions: windows of samples are decided as sensor windows."""
        return "sensor" if self.kind == "sensor-sample" else self.kind

    @property
    def latency_profile(self) -> LatencyProfile:
        return self.latency.profile or default_profile(self.kind)

    @property
    def knobs(self) -> LatencyKnobs:
        """The stream's waits: each key set on the stream (``latency``, ``batching.max_wait_ms``)
        or else its profile's. Within a ``PipelineConfig`` the pipeline-wide keys are filled
        in already (``PipelineConfig._resolve_latency``)."""
        base, lat = PROFILES[self.latency_profile], self.latency

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return LatencyKnobs(
            linger_ms=pick(lat.linger_ms, base.linger_ms),
            batch_wait_ms=pick(self.batching.max_wait_ms, base.batch_wait_ms),
            fetch_max_wait_ms=pick(lat.fetch_max_wait_ms, base.fetch_max_wait_ms),
            fetch_min_bytes=pick(lat.fetch_min_bytes, base.fetch_min_bytes),
            commit_interval_ms=pick(lat.commit_interval_ms, base.commit_interval_ms),
        )

    @property
    def resolved_dlq_topic(self) -> str:
        return self.dlq_topic or f"{self.input_topic}.dlq"

    def state_topic(self, group_id: str) -> str:
        """The changelog topic of this stream's state (``streams.state.changelog_topic``)."""
        return changelog_topic(group_id, self.name)

    @property
    def state_flush_interval_s(self) -> float:
        """How long this stream's changelog window lasts (0 under exactly_once: a flush
        before every commit)."""
        return self.state.flush_interval_s(self.delivery == "exactly_once")

    @property
    def plugin(self) -> str | None:
        """The plug-in code this stream runs (processor or postprocessor), if any."""
        return self.processor or self.postprocessor

    @property
    def drops_stale(self) -> bool:
        """Stale items are dropped: explicit setting, else camera streams in realtime mode."""
        if self.mode == "replay" or self.deadline_ms is None:
            return False
        if self.drop_stale is None:
            return self.kind == "camera"
        return self.drop_stale
