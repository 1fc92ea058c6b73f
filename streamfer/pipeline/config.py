"""Pipeline configuration: one YAML file, parsed once into frozen typed objects.

``load_config(path)`` reads the file and returns a :class:`PipelineConfig`, or
raises :class:`~streamfer.errors.ConfigError` that lists *every* problem found,
each with the file, the key path, the bad value and what is allowed::

    pipeline.yaml: streams[0].kind | input should be 'camera', 'sensor', 'sensor-sample',
    'transaction' or 'custom' (got 'video'). Note: allowed: camera, sensor, sensor-sample,
    transaction, custom

Rules beyond types (streamfer.pipeline.config_checks): a stream names a known model
and batches no larger than it; transactions are never dropped (no
``drop_stale``, no ``latest_per_key``); ``replay`` mode drops nothing;
``drop_stale`` needs ``deadline_ms``; a kind's threshold section (``fraud``,
``detection``, ``sensor``) only on streams of that kind; ``kind: custom``
needs a ``processor`` that imports, and ``processor_config`` passes the
plug-in's own checks; SASL needs a mechanism and credentials.
``delivery: exactly_once`` is allowed for every kind: the offsets of dropped
frames commit in the same transaction as the decisions.

Each default is written once, here, on the field it belongs to. Secrets
(``kafka.sasl_password``) are :class:`pydantic.SecretStr` and never printed;
``kafka.sasl_password_file`` keeps the password out of the config file
altogether. Relative file paths (model ONNX files, SSL files, the password
file) are resolved against the directory of the config file. When
``kafka.bootstrap_servers`` is left out, ``$STREAMFER_BOOTSTRAP`` or
``127.0.0.1:9092`` is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from streamfer.errors import ConfigError
from streamfer.paths import shipped_config, shipped_config_names
from streamfer.pipeline.config_checks import (
    kafka_problems,
    model_problems,
    plugin_problems,
    reference_problems,
    stream_problems,
    topic_problems,
)
from streamfer.pipeline.config_problems import Problem, format_problems, pydantic_problems
from streamfer.pipeline.latency import PROFILES, LatencyKnobs, LatencyProfile, default_profile
from streamfer.pipeline.metrics import DEFAULT_PORT
from streamfer.streams.client import DEFAULT_CLIENT, ClientName, ConsumerOptions, ProducerOptions

if TYPE_CHECKING:
    from streamfer.streams.codecs import CodecLimits
    from streamfer.streams.settings import KafkaSettings

Kind = Literal["camera", "sensor", "sensor-sample", "transaction", "custom"]
Target = Literal["auto", "tensorrt", "onnxruntime"]
Precision = Literal["fp32", "fp16", "int8"]
Mode = Literal["realtime", "replay"]
Delivery = Literal["at_least_once", "exactly_once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["none", "gzip", "lz4", "zstd"]  # as streams.client.Compression
PreprocessDevice = Literal["auto", "gpu", "cpu"]  # as engines.gpu.PreprocessDevice


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _default(options: Any, name: str) -> Any:
    """A client option's default, written once in ``streamfer.streams.client``."""
    return options.__dataclass_fields__[name].default


class KafkaConfig(_Frozen):
    """Connection to the cluster; shared by every consumer and producer of the process.

    ``create_topics``: at start, create the output and dead-letter topics that do
    not exist yet (as many partitions as the stream's input topic, and
    ``topic_replication_factor`` replicas: unset, the broker's
    ``default.replication.factor`` decides; a stream whose input topic is missing
    waits for it and creates its topics once it appears). When false, a missing
    one fails the start: clusters that disable ``auto.create.topics.enable``
    would otherwise fail every publish.

    SASL needs ``sasl_mechanism``, ``sasl_username`` and the password, given
    either inline (``sasl_password``) or as ``sasl_password_file``: a file that
    holds only the password (one trailing line break ignored), read when the
    clients are created. The file is how a Kubernetes secret volume or
    ``streamfer broker start --sasl-ssl`` (``<data dir>/sasl-ssl/password``) hands it
    over, and it keeps the password out of the config file and of the process
    environment. ``ssl_cafile`` is the CA that signed the brokers' certificates
    (unset: the system's CA store).
    """

    bootstrap_servers: str | None = Field(
        default=None,
        description=(
            "Brokers to connect to (host:port[,host:port]); unset: "
            "$STREAMFER_BOOTSTRAP, else 127.0.0.1:9092."
        ),
    )
    client: ClientName = Field(
        default=DEFAULT_CLIENT,
        description=(
            "The Kafka client library: librdkafka (confluent-kafka) or the "
            "pure-Python kafka-python."
        ),
    )
    client_id: str = Field(
        default="streamfer", description="Client id the brokers see in their logs and quotas."
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="How to reach the brokers: plain, TLS, SASL, or SASL over TLS.",
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL."
    )
    sasl_username: str | None = Field(default=None, description="SASL login name.")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password inline (never printed); prefer sasl_password_file."
    )
    sasl_password_file: Path | None = Field(
        default=None,
        description=(
            "A file holding only the SASL password (one trailing line break "
            "ignored); relative to the config file."
        ),
    )
    ssl_cafile: Path | None = Field(
        default=None,
        description=(
            "CA certificate (PEM) that signed the brokers' certificates; unset: "
            "the system's CA store. Relative to the config file."
        ),
    )
    ssl_certfile: Path | None = Field(
        default=None,
        description=(
            "Client certificate (PEM) for brokers that ask for one; relative to the config file."
        ),
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="Private key (PEM) of ssl_certfile; relative to the config file."
    )
    create_topics: bool = Field(
        default=True,
        description=(
            "At start, create missing output and dead-letter topics (partitions "
            "as the input topic); false: a missing topic fails the start."
        ),
    )
    topic_replication_factor: int | None = Field(
        default=None,
        ge=1,
        le=32767,  # Kafka's limit (int16)
        description="Replicas of each topic streamfer creates; unset: the broker's "
        "default.replication.factor (1 on a default broker; 3 is usual in production).",
    )

    def resolved_bootstrap(self) -> str:
        """The configured servers, else ``$STREAMFER_BOOTSTRAP``, else the local broker."""
        from streamfer.streams.admin import default_bootstrap

        return self.bootstrap_servers or default_bootstrap()

    def to_settings(self) -> KafkaSettings:
        """The streams package's connection settings (the secret revealed only there).

        Reads ``sasl_password_file`` when that is how the password is given.
        """
        from streamfer.streams.security import read_password_file
        from streamfer.streams.settings import KafkaSettings

        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.sasl_password_file is not None:
            password = read_password_file(self.sasl_password_file)
        return KafkaSettings(
            bootstrap_servers=self.resolved_bootstrap(),
            client_id=self.client_id,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=password,
            ssl_cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
            ssl_certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
            ssl_keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
        )


class ConsumerConfig(_Frozen):
    """Consumer settings; each default is the client option's own (``streamfer.streams.client``)."""

    group_id: str = Field(
        default="streamfer",
        description=(
            "Consumer group of every stream of the pipeline; also names state changelog topics."
        ),
    )
    max_poll_records: int = Field(
        default=_default(ConsumerOptions, "max_poll_records"),
        ge=1,
        description=("Most records one poll returns (one poll of a partition stays one batch)."),
    )
    fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Longest the broker waits to fill a fetch, for every stream; unset: each "
            "stream's latency profile (a stream's latency.fetch_max_wait_ms wins)."
        ),
    )
    max_partition_fetch_bytes: int = Field(
        default=_default(ConsumerOptions, "max_partition_fetch_bytes"),
        ge=1024,
        description=("Most bytes one fetch returns per partition; must exceed the largest record."),
    )
    session_timeout_ms: int = Field(
        default=_default(ConsumerOptions, "session_timeout_ms"),
        ge=1000,
        description=(
            "A worker silent this long is dropped from the group and its partitions reassigned."
        ),
    )
    max_poll_interval_ms: int = Field(
        default=_default(ConsumerOptions, "max_poll_interval_ms"),
        ge=1000,
        description="A worker that does not poll for this long leaves the group.",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default=_default(ConsumerOptions, "auto_offset_reset"),
        description="Where a group without a committed offset starts reading.",
    )

    def options(self, knobs: LatencyKnobs, *, isolation_level: Literal["read_uncommitted",
                "read_committed"] = "read_uncommitted") -> ConsumerOptions:  # fmt: skip
        """The options of one stream's consumer; its waits come from ``knobs`` (the stream's
        resolved latency, ``StreamConfig.knobs``)."""
        return ConsumerOptions(
            group_id=self.group_id,
            max_poll_records=self.max_poll_records,
            fetch_max_wait_ms=knobs.fetch_max_wait_ms,
            fetch_min_bytes=knobs.fetch_min_bytes,
            max_partition_fetch_bytes=self.max_partition_fetch_bytes,
            session_timeout_ms=self.session_timeout_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            auto_offset_reset=self.auto_offset_reset,
            isolation_level=isolation_level,
        )


class ProducerConfig(_Frozen):
    """Producer settings; each default is the client option's own (``streamfer.streams.client``).

    ``delivery_timeout_ms``: how long the client retries a decision or dead letter the
    cluster does not take before reporting it failed (the stream then stops, or counts
    a dead letter as ``dead_letter_failed``: ``dead_letters.on_failure``).
    """

    linger_ms: int | None = Field(
        default=None,
        ge=0,
        description=(
            "How long the producer waits to fill a batch of decisions, for every stream; "
            "unset: each stream's latency profile (a stream's latency.linger_ms wins)."
        ),
    )
    compression_type: Compression = Field(
        default=_default(ProducerOptions, "compression"),
        description="Compression of produced batches.",
    )
    max_request_size: int = Field(
        default=_default(ProducerOptions, "max_request_size"),
        ge=1024,
        description="Largest produce request; also caps a decision or dead letter.",
    )
    delivery_timeout_ms: int = Field(
        default=_default(ProducerOptions, "delivery_timeout_ms"),
        ge=1000,
        description=(
            "How long the client retries a publish the cluster does not take "
            "before it counts as failed."
        ),
    )
    transaction_timeout_ms: int = Field(
        default=_default(ProducerOptions, "transaction_timeout_ms"),
        ge=1000,
        description=(
            "With delivery: exactly_once, the broker aborts a transaction open longer than this."
        ),
    )

    def options(self, knobs: LatencyKnobs, *, transactional_id: str | None = None
                ) -> ProducerOptions:  # fmt: skip
        """The options of one stream's producer; its linger comes from ``knobs``."""
        return ProducerOptions(
            linger_ms=knobs.linger_ms,
            compression=self.compression_type,
            max_request_size=self.max_request_size,
            delivery_timeout_ms=self.delivery_timeout_ms,
            transactional_id=transactional_id,
            transaction_timeout_ms=self.transaction_timeout_ms,
        )


class ModelConfig(_Frozen):
    """``path``: one ONNX file, or a directory of versions (``<dir>/<version>/model.onnx``,
    an optional card ``model.md`` or ``card.json``; see ``streamfer.engines.versions``).
    The model section is re-read on SIGHUP (``streamfer.pipeline.reload``).
    """

    path: Path = Field(
        description=(
            "The ONNX file, or a directory of versions (<dir>/<version>/model.onnx); "
            "relative to the config file."
        )
    )
    version: str = Field(
        default="latest",
        min_length=1,
        description=(
            "Which version of a directory serves: latest (numbers and semver-like names "
            "in numeric order, above other names in lexical order) or a pinned name."
        ),
    )
    poll_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "How often a running worker looks for a new version and swaps it in; "
            "unset: only on SIGHUP."
        ),
    )
    target: Target = Field(
        default="auto",
        description=(
            "Engine: TensorRT on an NVIDIA GPU, ONNX Runtime on the CPU, or "
            "auto (TensorRT when it and a GPU are there)."
        ),
    )
    precision: Precision = Field(
        default="fp32",
        description="TensorRT build precision (ONNX Runtime runs the file as it is).",
    )
    max_batch: int = Field(
        default=64,
        ge=1,
        le=4096,
        description=(
            "Largest batch the engine is built for; a stream's "
            "batching.max_batch may not exceed it."
        ),
    )
    intra_op_threads: int | None = Field(
        default=None,
        ge=1,
        description="ONNX Runtime threads per inference; unset: the runtime's choice.",
    )


class BatchingConfig(_Frozen):
    max_batch: int = Field(
        default=32, ge=1, le=4096, description="Most records in one engine batch."
    )
    max_wait_ms: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Longest a record waits for its batch to fill (less when its deadline is near); "
            "unset: the stream's latency profile."
        ),
    )


class LatencyConfig(_Frozen):
    """A stream's latency profile and the keys that override it (``streamfer.pipeline.latency``).

    Every key left out comes from the profile; a pipeline-wide key (``producer.linger_ms``,
    ``consumer.fetch_max_wait_ms``, ``runtime.commit_interval_ms``) sits between: it wins
    over the profile, a key here wins over it. The batch wait is ``batching.max_wait_ms``.
    """

    profile: LatencyProfile | None = Field(
        default=None,
        description=(
            "low, balanced or throughput: the waits of the producer, batcher, fetch and "
            "commit; unset: low for transaction and camera streams, balanced otherwise."
        ),
    )
    linger_ms: int | None = Field(
        default=None,
        ge=0,
        description="How long the stream's producer waits to fill a batch of decisions.",
    )
    fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=0,
        description="Longest the broker holds the stream's fetch until fetch_min_bytes arrive.",
    )
    fetch_min_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Bytes the broker waits for (up to fetch_max_wait_ms) before answering.",
    )
    commit_interval_ms: int | None = Field(
        default=None,
        ge=1,
        description=(
            "How often resolved offsets commit; under exactly_once the transaction commit, "
            "which is when decisions become visible to read_committed readers."
        ),
    )


class FraudThresholds(_Frozen):
    """Score >= review -> review; score >= decline -> decline; else approve."""

    review: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Score at or above which a transaction is marked review.",
    )
    decline: float = Field(
        default=0.9, ge=0, le=1, description="Score at or above which a transaction is declined."
    )


class DetectionThresholds(_Frozen):
    """``labels``: the detector's class names in output order, for a model whose ONNX
    metadata carries none (or the wrong ones); unset: ``streamfer.labels`` or the
    Ultralytics ``names`` entry of the model's metadata."""

    score: float = Field(
        default=0.25, ge=0, le=1, description="Detections below this score are discarded."
    )
    iou: float = Field(
        default=0.45,
        ge=0,
        le=1,
        description=("Overlap above which non-maximum suppression keeps only the best box."),
    )
    max_detections: int = Field(default=100, ge=1, description="Most detections kept per frame.")
    labels: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Class names in output order, for a model whose metadata has none; "
            "unset: the model's own."
        ),
    )


class SensorThresholds(_Frozen):
    """Below ``min_confidence`` the event label is ``uncertain``."""

    min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="Below this confidence the event label is uncertain."
    )


class FramesConfig(_Frozen):
    """Camera header policy. ``missing_capture_ts``: a frame without a ``capture-ts-ns``
    header has its deadline run from the Kafka record timestamp (``record_timestamp``,
    counted in ``streamfer_deadline_fallbacks_total``) or goes to the dead-letter topic
    with reason ``missing_header`` (``dead_letter``)."""

    missing_capture_ts: Literal["record_timestamp", "dead_letter"] = Field(
        default="record_timestamp",
        description=(
            "A frame without capture-ts-ns: deadline from the Kafka timestamp, "
            "or dead letter missing_header."
        ),
    )


class DeadLettersConfig(_Frozen):
    """``on_failure``: a dead letter the cluster will not take (after the client's own
    retries) stops the stream with an error naming the record (``stop``), or is counted
    as dropped with reason ``dead_letter_failed`` and skipped (``skip``)."""

    on_failure: Literal["stop", "skip"] = Field(
        default="stop",
        description=(
            "A dead letter the cluster refuses: stop the stream, or count it as "
            "dropped (dead_letter_failed) and go on."
        ),
    )


class LimitsConfig(_Frozen):
    """Checked before any expensive decode; a record over a limit goes to the DLQ."""

    max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1,
        description=("Larger record values (frames, raw windows) are dead-lettered as too_large."),
    )
    max_image_pixels: int = Field(
        default=4096 * 4096,
        ge=1,
        description=(
            "Images with more pixels (read from the header) are dead-lettered as image_too_large."
        ),
    )
    max_json_bytes: int = Field(
        default=64 * 1024, ge=1, description="Larger JSON values are dead-lettered as too_large."
    )

    def codec_limits(self, sensor_shape: tuple[int, int] = (100, 6)) -> CodecLimits:
        """These limits as the codecs take them."""
        from streamfer.streams.codecs import CodecLimits

        return CodecLimits(
            max_message_bytes=self.max_message_bytes,
            max_image_pixels=self.max_image_pixels,
            max_json_bytes=self.max_json_bytes,
            sensor_shape=sensor_shape,
        )


class StateConfig(_Frozen):
    """Per-key state kept in a local store per partition and a compacted changelog topic
    (``<consumer.group_id>.<stream>.state``), restored on assignment, so a restart or a
    rebalance continues from the state after exactly the committed records
    (``streamfer.streams.state``). Without it (``enabled: false``) a stateful processor keeps its
    state in memory only: after a restart every key starts afresh.

    ``dir``: where the local stores live (``<dir>/<group>.<stream>/w<worker>/p<partition>``;
    default ``<system temp dir>/streamfer-state``; relative to the config file's
    directory). ``ttl_s``: a key not updated for that long (event time) is forgotten and
    deleted (null: never). ``cache_keys``: decoded values held in memory per partition.
    ``min_compaction_lag_s``: the changelog keeps every entry that long; a partition
    restored later than that after its worker stopped may lose the updates of its last
    uncommitted records' keys (see ``streamfer.streams.state.restore``). ``restore_timeout_s``: a
    restore that makes no progress that long fails the stream.
    """

    enabled: bool = Field(
        default=False,
        description=(
            "Keep per-key state in a local store backed by a compacted "
            "changelog topic; false: in memory only."
        ),
    )
    dir: Path | None = Field(
        default=None,
        description=(
            "Where the local stores live; unset: <system temp>/streamfer-state. "
            "Relative to the config file."
        ),
    )
    ttl_s: float | None = Field(
        default=30 * 86_400.0,
        gt=0,
        description="A key not updated this long (event time) is deleted; null: never.",
    )
    cache_keys: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Decoded values held in memory per partition; the rest is read from the store."
        ),
    )
    min_compaction_lag_s: float = Field(
        default=3_600.0,
        gt=0,
        description=("The changelog keeps every entry at least this long before compaction."),
    )
    restore_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="A state restore without progress this long fails the stream.",
    )

    def resolved_dir(self) -> Path:
        import tempfile

        return self.dir or Path(tempfile.gettempdir()) / "streamfer-state"


class WindowsConfig(_Frozen):
    """``kind: sensor-sample``: windows assembled per key from single samples (``size``
    samples, a new window every ``hop``; ``channels`` per sample). A sample is held
    until the key's newest event time is ``reorder_ms`` past it, so samples out of
    order by less than that are put in order; older ones are dropped as ``late``.
    ``size`` and ``channels`` must match the sensor model's input window."""

    size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Samples per window; must match the sensor model's input.",
    )
    hop: int = Field(default=50, ge=1, description="A new window every this many samples.")
    channels: int = Field(
        default=6,
        ge=1,
        le=1024,
        description="Values per sample; must match the sensor model's input.",
    )
    reorder_ms: float = Field(
        default=200.0,
        ge=0,
        description=(
            "Samples late by less than this are put in order; older ones are dropped as late."
        ),
    )


class PreprocessConfig(_Frozen):
    """Where camera frames are decoded and letterboxed: ``auto`` is the GPU when the
    engine is TensorRT and the GPU libraries are installed (streamfer.engines.gpu)."""

    device: PreprocessDevice = Field(
        default="auto",
        description=(
            "Where camera frames are decoded and letterboxed; auto: the GPU "
            "when the engine is TensorRT and the GPU libraries are installed."
        ),
    )


class ShadowConfig(_Frozen):
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

    model: str = Field(min_length=1, description="The shadow model, a model of `models`.")
    output_topic: str = Field(
        min_length=1, description="Side topic for the shadow's decisions (best effort)."
    )
    sample: float = Field(
        default=1.0, ge=0, le=1, description="Share of each batch's rows the shadow scores."
    )
    max_backlog: int = Field(
        default=64, ge=1, le=10_000, description="Batches queued for the shadow; more are shed."
    )


class StreamConfig(_Frozen):
    """One input topic -> one model -> one output topic.

    ``kind: custom`` runs the plug-in ``processor`` (``package.module:Name``, or the name
    of a ``streamfer.processors`` entry point) on the stream's records; a built-in kind
    may put a plug-in ``postprocessor`` in place of its own results step. Either gets
    ``processor_config`` (free-form; checked by the plug-in, see
    ``streamfer.pipeline.processors.plugins``).
    """

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The stream's name, in logs, metrics labels and decisions.",
    )
    kind: Kind = Field(
        description=("What the records are: a built-in kind, or custom for a processor plug-in.")
    )
    processor: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "kind: custom: the plug-in, package.module:Name or a "
            "streamfer.processors entry point name."
        ),
    )
    postprocessor: str | None = Field(
        default=None,
        min_length=1,
        description="Built-in kinds: a plug-in that replaces the kind's results step.",
    )
    processor_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form settings handed to the plug-in and checked by it.",
    )
    input_topic: str = Field(min_length=1, description="Topic the stream consumes.")
    output_topic: str = Field(min_length=1, description="Topic its decisions go to.")
    dlq_topic: str | None = Field(
        default=None, description="Dead-letter topic; unset: <input_topic>.dlq."
    )
    model: str = Field(description="Name of a model under models.")
    mode: Mode = Field(
        default="realtime",
        description=("realtime drops per the deadline settings; replay drops nothing (backfills)."),
    )
    delivery: Delivery = Field(
        default="at_least_once",
        description=("exactly_once commits decisions and offsets in one Kafka transaction."),
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    deadline_ms: float | None = Field(
        default=None,
        gt=0,
        description=(
            "A record's time budget from its event time; past it, a camera frame is stale."
        ),
    )
    drop_stale: bool | None = Field(
        default=None,
        description=(
            "Drop records past deadline_ms before the engine; unset: true for "
            "camera streams in realtime mode."
        ),
    )
    latest_per_key: bool = Field(
        default=False,
        description=(
            "Keep only the newest record per key waiting for the engine (older "
            "ones dropped as superseded)."
        ),
    )
    fraud: FraudThresholds = Field(default_factory=FraudThresholds)
    detection: DetectionThresholds = Field(default_factory=DetectionThresholds)
    sensor: SensorThresholds = Field(default_factory=SensorThresholds)
    frames: FramesConfig = Field(default_factory=FramesConfig)
    dead_letters: DeadLettersConfig = Field(default_factory=DeadLettersConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    shadow: ShadowConfig | None = Field(
        default=None,
        description="A second model scoring the same batches to a side topic (docs/models.md).",
    )

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
        from streamfer.streams.state.changelog import changelog_topic

        return changelog_topic(group_id, self.name)

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


class MetricsConfig(_Frozen):
    """Where ``/metrics``, ``/healthz`` and ``/readyz`` are served (one HTTP port).

    ``host`` is the address it binds. The default, ``0.0.0.0`` (every IPv4
    interface), is what a Prometheus server or a Kubernetes probe on another
    machine or pod needs to reach it; the endpoints carry counters and
    timings, never records or secrets. Bind ``127.0.0.1`` where only local
    scrapers may read them (a shared host), or one interface's address.
    ``streamfer run --metrics-host`` overrides it. ``port`` 0 picks a free port;
    worker *i* of ``--workers`` uses ``port + i``.
    """

    enabled: bool = Field(default=True, description="Serve /metrics, /healthz and /readyz.")
    host: str = Field(
        default="0.0.0.0",
        min_length=1,
        description=(
            "Address the HTTP port binds; 127.0.0.1 keeps it local. streamfer "
            "run --metrics-host overrides it."
        ),
    )
    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description=(
            "Port of /metrics, /healthz and /readyz; 0 picks a free one; worker "
            "i of --workers uses port + i."
        ),
    )


class RuntimeConfig(_Frozen):
    """``max_in_flight``: records a stream holds between poll and engine (more pauses
    fetching); ``broker_timeout_s``: readiness turns false once the cluster has been
    unreachable (no fetch, commit, acknowledgement or broker report) that long."""

    preprocess_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads of each stream's preprocessing pool (decoding records).",
    )
    max_in_flight: int = Field(
        default=2000,
        ge=1,
        description=("Records a stream holds between poll and engine; more pauses fetching."),
    )
    commit_interval_ms: int | None = Field(
        default=None,
        ge=1,
        description=(
            "How often resolved offsets are committed, for every stream; unset: each "
            "stream's latency profile (a stream's latency.commit_interval_ms wins)."
        ),
    )
    drain_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "On stop (SIGTERM) or a partition revoke, how long records in "
            "flight may take to finish and commit."
        ),
    )
    broker_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=("Readiness turns false once the cluster has been unreachable this long."),
    )


class PipelineConfig(_Frozen):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    consumer: ConsumerConfig = Field(default_factory=ConsumerConfig)
    producer: ProducerConfig = Field(default_factory=ProducerConfig)
    models: dict[str, ModelConfig] = Field(min_length=1)
    streams: list[StreamConfig] = Field(min_length=1)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="before")
    @classmethod
    def _resolve_latency(cls, raw: Any) -> Any:
        """Fill in each stream's latency keys and batch wait (a stream's key, else the
        pipeline-wide key, else its profile's), so the parsed config (and ``streamfer
        config show``) holds the values the stream runs with."""
        if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
            return raw

        def section_key(section: str, key: str) -> Any:
            value = raw.get(section)
            return value.get(key) if isinstance(value, dict) else None

        wide = {
            "linger_ms": section_key("producer", "linger_ms"),
            "fetch_max_wait_ms": section_key("consumer", "fetch_max_wait_ms"),
            "commit_interval_ms": section_key("runtime", "commit_interval_ms"),
        }
        streams = []
        for s in raw["streams"]:
            latency = s.get("latency", {}) if isinstance(s, dict) else None
            batching = s.get("batching", {}) if isinstance(s, dict) else None
            kind = s.get("kind") if isinstance(s, dict) else None
            if not isinstance(latency, dict) or not isinstance(batching, dict):
                streams.append(s)
                continue
            profile = latency.get("profile") or default_profile(str(kind))
            base = PROFILES.get(profile)
            if base is None:  # reported by validation
                streams.append(s)
                continue
            filled = {"profile": profile}
            for key in ("linger_ms", "fetch_max_wait_ms", "fetch_min_bytes",
                        "commit_interval_ms"):  # fmt: skip
                for value in (latency.get(key), wide.get(key), getattr(base, key)):
                    if value is not None:
                        filled[key] = value
                        break
            wait = batching.get("max_wait_ms")
            batching = {**batching, "max_wait_ms": base.batch_wait_ms if wait is None else wait}
            streams.append({**s, "latency": {**latency, **filled}, "batching": batching})
        return {**raw, "streams": streams}

    def stream(self, name: str) -> StreamConfig:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)

    def summary(self) -> str:
        """A short human summary, no secrets."""
        lines = [f"kafka {self.kafka.resolved_bootstrap()} ({self.kafka.security_protocol})"]
        for name, model in self.models.items():
            lines.append(
                f"model {name}: {model.path} version={model.version} target={model.target} "
                f"{model.precision}"
            )
        for s in self.streams:
            kind = f"{s.kind} {s.plugin}" if s.plugin else s.kind
            lines.append(
                f"stream {s.name} ({kind}): {s.input_topic} -> {s.model} -> {s.output_topic}"
                f" [{s.mode}, {s.delivery}, batch<={s.batching.max_batch}"
                f" wait<={s.knobs.batch_wait_ms:g}ms, latency {s.latency_profile},"
                f" drops stale: {s.drops_stale}]"
            )
            if s.shadow is not None:
                lines.append(
                    f"  shadow {s.shadow.model} -> {s.shadow.output_topic}"
                    f" (sample {s.shadow.sample:g}, backlog <= {s.shadow.max_backlog} batches)"
                )
        return "\n".join(lines)


_T = TypeVar("_T", bound=BaseModel)


def _resolve_paths(raw: Any, base: Path) -> Any:
    """Make relative file paths relative to the config file's directory."""
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    models = raw.get("models")
    if isinstance(models, dict):
        raw["models"] = {name: _with_path(m, ("path",), base) for name, m in models.items()}
    if isinstance(raw.get("kafka"), dict):
        files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file")
        raw["kafka"] = _with_path(raw["kafka"], files, base)
    streams = raw.get("streams")
    if isinstance(streams, list):
        raw["streams"] = [
            {**s, "state": _with_path(s["state"], ("dir",), base)}
            if isinstance(s, dict) and isinstance(s.get("state"), dict)
            else s
            for s in streams
        ]
    return raw


def _with_path(section: Any, keys: tuple[str, ...], base: Path) -> Any:
    if not isinstance(section, dict):
        return section
    out = dict(section)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = os.path.normpath(base / value)
    return out


def _try(model: type[_T], raw: Any) -> _T | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # its structural errors are reported already


def _semantic_problems(raw: dict[str, Any]) -> Iterator[Problem]:
    """Cross-field checks on every section that parsed, even when others did not."""
    kafka = _try(KafkaConfig, raw.get("kafka", {}))
    if kafka is not None:
        yield from kafka_problems(kafka)
    raw_models = raw.get("models")
    models: dict[str, ModelConfig | None] = {}
    if isinstance(raw_models, dict):
        models = {str(n): _try(ModelConfig, m) for n, m in raw_models.items()}
    for name, model in models.items():
        if model is not None:
            yield from model_problems(name, model)
    raw_streams = raw.get("streams")
    raw_streams = raw_streams if isinstance(raw_streams, list) else []
    consumer = _try(ConsumerConfig, raw.get("consumer", {}))
    for i, s in enumerate(raw_streams):
        stream = _try(StreamConfig, s)
        if stream is not None:
            yield from topic_problems(i, stream, consumer.group_id if consumer else None)
            yield from stream_problems(i, stream, models)
            yield from plugin_problems(i, stream)
    yield from reference_problems(
        raw_streams, list(models) if isinstance(raw_models, dict) else None
    )


def parse_config(
    raw: Any, source: str = "<config>", base_dir: Path | None = None
) -> PipelineConfig:
    """Validate an already-loaded mapping; ``source`` names it in error messages."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source} | top level must be a mapping (got {type(raw).__name__}). "
            "Note: expected keys kafka, consumer, producer, models, streams, metrics, runtime"
        )
    raw = _resolve_paths(raw, base_dir or Path.cwd())
    problems: list[Problem] = []
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = pydantic_problems(exc, PipelineConfig)
    problems += _semantic_problems(raw)
    if problems:
        raise ConfigError(format_problems(source, sorted(problems, key=lambda p: p.key)))
    return cfg


def config_file(ref: str | Path) -> Path:
    """``ref`` when it is a path; a bare name (``fraud``) is the shipped config of that name."""
    path = Path(ref)
    if path.exists() or path.suffix or len(path.parts) != 1:
        return path
    shipped = shipped_config(str(ref))
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_config_names())
    raise ConfigError(
        f"{ref} | no such config file, nor a shipped config of that name. "
        f"Note: expected a YAML file's path or one of: {names}"
    )


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML config file (or a shipped one by name, see ``config_file``);
    ConfigError lists every problem."""
    path, raw = read_config(path)
    return parse_config(raw, str(path), path.resolve().parent)


def read_config(ref: str | Path) -> tuple[Path, Any]:
    """The config file ``ref`` names (see ``config_file``) and its YAML, not yet validated."""
    path = config_file(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path} | cannot read the config file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} | not valid YAML: {exc}") from None
    return path, raw
