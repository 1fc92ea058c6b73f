"""Kafka in and out for streamfer.

- ``records.Record``: one consumed message (``coords`` = ``topic[partition]@offset``).
- ``settings.KafkaSettings``: brokers, SASL (PLAIN, SCRAM) and SSL; secrets hidden.
- ``source.KafkaSource``: consumer-group member (cooperative sticky) whose commits
  never pass an unresolved record; ``poll`` on one thread, ``resolve`` from any thread,
  ``ack_callback(record)`` for the sink; exactly-once via ``use_transactions(sink)``.
- ``sink.KafkaSink``: idempotent producer, delivery callbacks, transactional mode.
- ``dlq.DeadLetterWriter``: original bytes and headers plus error/source headers.
- ``codecs``: camera, sensor, transaction decoders; the decision schema and encoder.
- ``producers`` / ``feeds``: paced load producers (``streamfer produce``).
- ``client``: the Protocols the above use; ``kafka_python`` implements them.
- ``security``: TLS/SASL connection failures explained (listener, protocol, mechanism,
  never the password) and a login check that reports them at start.
- ``broker`` / ``broker_secure``: the local broker, optionally with a SASL_SSL
  listener (SCRAM-SHA-512, a certificate from the project's own CA).
"""
