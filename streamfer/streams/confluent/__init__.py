"""The librdkafka (confluent-kafka) implementation of the ``streamfer.streams.client`` Protocols.

librdkafka fetches, heartbeats and sends on its own C threads, so the Python
side only moves batches in and out. One module per client role:

- ``consumer``: the group consumer and its rebalance callbacks;
- ``producer``: the idempotent (optionally transactional) producer;
- ``reader``: the state reader (assign only, read_committed);
- ``admin``: topic administration (``AdminClient``);
- ``common``: error translation and batching they share.
"""

from __future__ import annotations

from streamfer.streams.client import AdapterFactory
from streamfer.streams.confluent.admin import open_admin
from streamfer.streams.confluent.consumer import open_consumer
from streamfer.streams.confluent.producer import open_producer
from streamfer.streams.confluent.reader import open_reader


class ConfluentFactory(AdapterFactory):
    """``ClientFactory`` for confluent-kafka (librdkafka)."""

    def __init__(self) -> None:
        super().__init__(open_consumer, open_producer, open_reader, open_admin)


__all__ = ["ConfluentFactory"]
