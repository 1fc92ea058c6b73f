"""The kafka-python (3.x) implementation of the ``streamfer.streams.client`` Protocols.

One module per client role, as for confluent-kafka:

- ``consumer``: the group consumer and its rebalance listener;
- ``producer``: the idempotent (optionally transactional) producer;
- ``reader``: the state reader (assign only, read_committed);
- ``admin``: topic administration (``KafkaAdminClient``);
- ``common``: error translation, connecting and batching they share;
- ``workarounds``: kafka-python 3.0.x behaviour worked around, version-gated.
"""

from __future__ import annotations

from streamfer.streams.client import AdapterFactory
from streamfer.streams.kafka_python.admin import open_admin
from streamfer.streams.kafka_python.consumer import open_consumer
from streamfer.streams.kafka_python.producer import open_producer
from streamfer.streams.kafka_python.reader import open_reader


class KafkaPythonFactory(AdapterFactory):
    """``ClientFactory`` for kafka-python 3."""

    def __init__(self) -> None:
        super().__init__(open_consumer, open_producer, open_reader, open_admin)


__all__ = ["KafkaPythonFactory"]
