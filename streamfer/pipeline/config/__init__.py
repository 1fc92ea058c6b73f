"""Pipeline configuration: one YAML file, parsed once into frozen typed objects.

``load_config(path)`` reads the file and returns a :class:`PipelineConfig`, or
raises :class:`~streamfer.errors.ConfigError` that lists *every* problem found,
each with the file, the key path, the bad value and what is allowed::

    pipeline.yaml: streams[0].kind | input should be 'camera', 'sensor', 'sensor-sample',
    'transaction' or 'custom' (got 'video'). Note: allowed: camera, sensor, sensor-sample,
    transaction, custom

One module per section: ``kafka``, ``clients`` (``consumer`` and ``producer``),
``model``, ``stream`` (with ``thresholds``, ``records`` and ``state``, the parts of a
stream), ``runtime`` (``metrics`` and ``runtime``) and ``pipeline`` (the whole file);
``load`` reads a file, ``checks`` holds the rules beyond types, ``plugins`` finds the
plug-ins a stream names, ``problems`` words what is wrong, and ``sources`` applies
the environment's overrides and says where each value came from.

Rules beyond types (``config.checks``): a stream names a known model and batches no
larger than it; transactions are never dropped (no ``drop_stale``, no
``latest_per_key``); ``replay`` mode drops nothing; ``drop_stale`` needs
``deadline_ms``; a kind's threshold section (``fraud``, ``detection``, ``sensor``)
only on streams of that kind; ``kind: custom`` needs a ``processor`` that imports,
and ``processor_config`` passes the plug-in's own checks; SASL needs a mechanism and
credentials. ``delivery: exactly_once`` is allowed for every kind: the offsets of
dropped frames commit in the same transaction as the decisions.

Each default is written once, on the field it belongs to, or taken from the layer that
owns it (a client option's from ``streamfer.streams.client``, the engine batch from
``streamfer.engines.base``, the metrics port from ``streamfer.pipeline.metrics``).
Secrets (``kafka.sasl_password``) are :class:`pydantic.SecretStr` and never printed;
``kafka.sasl_password_file`` keeps the password out of the config file altogether.
Relative file paths (model ONNX files, SSL files, the password file, the state
directory) are resolved against the directory of the config file. When
``kafka.bootstrap_servers`` is left out, ``$STREAMFER_BOOTSTRAP`` or
``127.0.0.1:9092`` is used.
"""

from __future__ import annotations

from streamfer.pipeline.config.clients import ConsumerConfig, ProducerConfig
from streamfer.pipeline.config.kafka import KafkaConfig, SaslMechanism, SecurityProtocol
from streamfer.pipeline.config.load import config_file, load_config, parse_config, read_config
from streamfer.pipeline.config.model import ModelConfig, Precision, Target
from streamfer.pipeline.config.pipeline import PipelineConfig
from streamfer.pipeline.config.records import (
    DeadLettersConfig,
    FramesConfig,
    LimitsConfig,
    PreprocessConfig,
    WindowsConfig,
)
from streamfer.pipeline.config.runtime import MetricsConfig, RuntimeConfig
from streamfer.pipeline.config.state import StateConfig
from streamfer.pipeline.config.stream import (
    BatchingConfig,
    Delivery,
    Kind,
    LatencyConfig,
    Mode,
    ShadowConfig,
    StreamConfig,
)
from streamfer.pipeline.config.thresholds import (
    DetectionThresholds,
    FraudThresholds,
    SensorThresholds,
)

__all__ = [
    "BatchingConfig",
    "ConsumerConfig",
    "DeadLettersConfig",
    "Delivery",
    "DetectionThresholds",
    "FramesConfig",
    "FraudThresholds",
    "KafkaConfig",
    "Kind",
    "LatencyConfig",
    "LimitsConfig",
    "MetricsConfig",
    "Mode",
    "ModelConfig",
    "PipelineConfig",
    "Precision",
    "PreprocessConfig",
    "ProducerConfig",
    "RuntimeConfig",
    "SaslMechanism",
    "SecurityProtocol",
    "SensorThresholds",
    "ShadowConfig",
    "StateConfig",
    "StreamConfig",
    "Target",
    "WindowsConfig",
    "config_file",
    "load_config",
    "parse_config",
    "read_config",
]
