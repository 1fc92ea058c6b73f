"""The whole file: ``PipelineConfig``, its sections, and each stream's latency resolved."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from streamfer.pipeline.config.base import Frozen
from streamfer.pipeline.config.clients import ConsumerConfig, ProducerConfig
from streamfer.pipeline.config.kafka import KafkaConfig
from streamfer.pipeline.config.model import ModelConfig
from streamfer.pipeline.config.runtime import MetricsConfig, RuntimeConfig
from streamfer.pipeline.config.stream import StreamConfig
from streamfer.pipeline.latency import PROFILES, default_profile


class PipelineConfig(Frozen):
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
