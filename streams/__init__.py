"""Kafka in and out for streamfer.

- ``streams.records.Record``: one consumed message (``coords`` = ``topic[partition]@offset``).
- ``streams.settings.KafkaSettings``: brokers, SASL (PLAIN, SCRAM) and SSL; secrets hidden.
- ``streams.source.KafkaSource``: consumer-group member (cooperative sticky) whose commits
  never pass an unresolved record; ``poll`` on one thread, ``resolve`` from any thread,
  ``ack_callback(record)`` for the sink; exactly-once via ``use_transactions(sink)``.
- ``streams.sink.KafkaSink``: idempotent producer, delivery callbacks, transactional mode.
- ``streams.dlq.DeadLetterWriter``: original bytes and headers plus error/source headers.
- ``streams.codecs``: camera, sensor, transaction decoders; the decision schema and encoder.
- ``streams.producers`` / ``streams.feeds``: paced load producers (``streamfer produce``).
- ``streams.client``: the Protocols the above use; ``streams.kafka_python`` implements them.
- ``streams.security``: TLS/SASL connection failures explained (listener, protocol, mechanism,
  never the password) and a login check that reports them at start.
- ``streams.broker`` / ``streams.broker_secure``: the local broker, optionally with a SASL_SSL
  listener (SCRAM-SHA-512, a certificate from the project's own CA).
"""
