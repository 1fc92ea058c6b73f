"""Connection settings shared by every Kafka client streamfer creates, and the default
cluster address (``$STREAMFER_BOOTSTRAP`` or ``127.0.0.1:9092``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from streamfer.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = "STREAMFER_BOOTSTRAP"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)


def default_bootstrap() -> str:
    """The bootstrap address every command uses unless told otherwise."""
    return os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP)


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how to authenticate; the password never appears in repr.

    ``consumer_kwargs()`` / ``producer_kwargs()`` / ``admin_kwargs()`` give kafka-python
    keyword arguments, ``librdkafka_config()`` the same connection as librdkafka
    (confluent-kafka) properties.
    """

    bootstrap_servers: str = field(default_factory=default_bootstrap)
    client_id: str = "streamfer"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError(
                "kafka.bootstrap_servers | empty. Note: expected host:port[,host:port...]"
            )
        if self.security_protocol not in _PROTOCOLS:
            raise ConfigError(
                f"kafka.security_protocol | got {self.security_protocol!r}. "
                f"Note: expected one of {', '.join(_PROTOCOLS)}"
            )
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl:
            if self.sasl_mechanism not in _MECHANISMS:
                raise ConfigError(
                    f"kafka.sasl_mechanism | got {self.sasl_mechanism!r} with "
                    f"{self.security_protocol}. Note: expected one of {', '.join(_MECHANISMS)}"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError(
                    f"kafka.sasl_username/sasl_password | missing for {self.sasl_mechanism}. "
                    "Note: SASL needs both a username and a password"
                )
        elif self.sasl_mechanism is not None:
            raise ConfigError(
                f"kafka.sasl_mechanism | got {self.sasl_mechanism!r} with "
                f"{self.security_protocol}. Note: SASL needs SASL_PLAINTEXT or SASL_SSL"
            )

    def describe(self) -> str:
        """One line safe to log: no secret in it."""
        auth = f" {self.sasl_mechanism} user={self.sasl_username}" if self.sasl_mechanism else ""
        return f"{self.bootstrap_servers} ({self.security_protocol}{auth})"

    def _common(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",")],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def librdkafka_config(self) -> dict[str, str]:
        """The connection as librdkafka properties (contain the secret: never log).

        Certificates are checked against the broker's name as kafka-python does
        (``ssl.endpoint.identification.algorithm=https``, librdkafka's default since 2.0,
        written out so a reader sees it); without ``ssl_cafile`` librdkafka uses the
        system's CA store.
        """
        conf = {
            "bootstrap.servers": ",".join(s.strip() for s in self.bootstrap_servers.split(",")),
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password or ""
        if self.security_protocol.endswith("SSL"):
            conf["ssl.endpoint.identification.algorithm"] = "https"
        locations = {
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
        }
        conf.update({key: value for key, value in locations.items() if value is not None})
        return conf

    def consumer_kwargs(self) -> dict[str, Any]:
        """kafka-python KafkaConsumer connection arguments (contain the secret: never log)."""
        return self._common()

    def producer_kwargs(self) -> dict[str, Any]:
        """kafka-python KafkaProducer connection arguments (contain the secret: never log)."""
        return self._common()

    def admin_kwargs(self) -> dict[str, Any]:
        """kafka-python KafkaAdminClient connection arguments (contain the secret: never log)."""
        return self._common()
