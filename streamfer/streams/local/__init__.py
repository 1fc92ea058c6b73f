"""The local Kafka broker and the sample feeds, for the demo, the tests, CI and benchmarks.

- ``broker``: ``LocalBroker`` starts, finds and stops one KRaft broker process;
- ``files``: ``BrokerFiles``, what it runs from (jars from Maven Central, the rendered
  ``server.properties``, formatted storage, the pid/ports state file);
- ``secure``: the optional SASL_SSL listener (SCRAM-SHA-512, a certificate from the
  project's own CA);
- ``broker_cli``: ``streamfer broker start|stop|status``;
- ``feeds``: synthetic camera, sensor and transaction messages and recorded samples;
- ``producers``: paced producers of those feeds (``streamfer produce``, the demo).
"""
