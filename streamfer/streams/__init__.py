"""Kafka in and out for streamfer.

Consuming (one consumer thread):

- ``records``: ``RecordBatch`` (one poll's records of one partition, columns plus the
  span the tracker follows) and ``Record`` (one message, ``coords`` = ``topic[partition]@offset``).
- ``source.KafkaSource``: a consumer-group member (cooperative sticky); ``poll`` returns a
  batch per partition, each tracked as one span of ``tracker.OffsetTracker``, which any
  thread resolves (rows or whole spans) once their outcome is final.
- ``committer``: commits only the resolved prefix, through the consumer (at-least-once) or
  the sink's transaction (exactly-once, ``KafkaSource.use_transactions(sink)``);
  ``membership``: the assignment and who hears of rebalances; ``pausing``: backpressure.

Producing: ``sink.KafkaSink`` (idempotent producer, delivery callbacks, transactional
mode); ``dlq.DeadLetterWriter`` (original bytes and headers plus error/source headers,
``reasons``: the closed sets of dead-letter and drop reasons).

Clients: ``client`` holds the Protocols and options the above are written against;
``confluent`` (librdkafka, the default) and ``kafka_python`` implement them, a module per
role (consumer, producer, reader, admin); ``factory.client_factory(name)`` picks one.
``admin``: topics created, described and deleted through the configured client;
``settings.KafkaSettings``: brokers, SASL (PLAIN, SCRAM) and SSL, secrets hidden;
``security``: TLS/SASL failures explained; ``connection``: is the cluster reachable.

Also: ``codecs`` (camera, sensor, transaction decoders; the decision schema and
encoder), ``state`` (per-key state restored from a changelog), ``local`` (the local
broker and the sample feeds and producers), ``cli`` / ``tail_cli`` / ``bootstrap``
(``streamfer produce``, ``streamfer tail``, where the cluster is).
"""
