"""The ``kafka`` section: how the process reaches the cluster (servers, TLS, SASL, topics)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from streamfer.pipeline.config.base import Frozen
from streamfer.streams.admin import default_bootstrap
from streamfer.streams.client import DEFAULT_CLIENT, ClientName
from streamfer.streams.security import read_password_file
from streamfer.streams.settings import KafkaSettings, SaslMechanism, SecurityProtocol


class KafkaConfig(Frozen):
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

    bootstrap_servers: str | None = None
    """Brokers to connect to (host:port[,host:port]); unset: $STREAMFER_BOOTSTRAP, else
    127.0.0.1:9092."""
    client: ClientName = DEFAULT_CLIENT
    """The Kafka client library: librdkafka (confluent-kafka) or the pure-Python kafka-python."""
    client_id: str = "streamfer"
    """Client id the brokers see in their logs and quotas."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """How to reach the brokers: plain, TLS, SASL, or SASL over TLS."""
    sasl_mechanism: SaslMechanism | None = None
    """SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL."""
    sasl_username: str | None = None
    """SASL login name."""
    sasl_password: SecretStr | None = None
    """SASL password inline (never printed); prefer sasl_password_file."""
    sasl_password_file: Path | None = None
    """A file holding only the SASL password (one trailing line break ignored); relative to the
    config file."""
    ssl_cafile: Path | None = None
    """CA certificate (PEM) that signed the brokers' certificates; unset: the system's CA store.
    Relative to the config file."""
    ssl_certfile: Path | None = None
    """Client certificate (PEM) for brokers that ask for one; relative to the config file."""
    ssl_keyfile: Path | None = None
    """Private key (PEM) of ssl_certfile; relative to the config file."""
    create_topics: bool = True
    """At start, create missing output and dead-letter topics (partitions as the input topic);
    false: a missing topic fails the start."""
    topic_replication_factor: int | None = Field(
        default=None, ge=1, le=32767
    )  # Kafka's limit (int16)
    """Replicas of each topic streamfer creates; unset: the broker's default.replication.factor (1
    on a default broker; 3 is usual in production)."""

    def resolved_bootstrap(self) -> str:
        """The configured servers, else ``$STREAMFER_BOOTSTRAP``, else the local broker."""
        return self.bootstrap_servers or default_bootstrap()

    def to_settings(self) -> KafkaSettings:
        """The streams package's connection settings (the secret revealed only there).

        Reads ``sasl_password_file`` when that is how the password is given.
        """
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
