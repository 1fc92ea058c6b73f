"""The one place that picks a Kafka client library by name.

``client_factory(name)`` imports the named adapter package on first use, so a
pipeline configured for confluent-kafka never loads kafka-python (and the other
way round). The adapters import only ``streamfer.streams.client``, never this module.
"""

from __future__ import annotations

from streamfer.errors import ConfigError
from streamfer.streams.client import CLIENTS, DEFAULT_CLIENT, ClientFactory, ClientName


def client_factory(name: ClientName = DEFAULT_CLIENT) -> ClientFactory:
    """The factory of the named client library (imported on first use)."""
    if name == "confluent-kafka":
        from streamfer.streams.confluent import ConfluentFactory

        return ConfluentFactory()
    if name == "kafka-python":
        from streamfer.streams.kafka_python import KafkaPythonFactory

        return KafkaPythonFactory()
    raise ConfigError(f"kafka.client | got {name!r}. Note: expected one of {', '.join(CLIENTS)}")
