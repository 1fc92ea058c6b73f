"""KafkaSettings: validated once, secrets never shown."""

from __future__ import annotations

import pytest

from streamfer.errors import ConfigError
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings


def test_sasl_scram_over_ssl_kwargs_and_hidden_password() -> None:
    s = KafkaSettings(
        "b1:9093, b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="s3cret-pw",
        ssl_cafile="/etc/ca.pem",
    )
    kwargs = s.consumer_kwargs()
    assert kwargs["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "svc"
    assert kwargs["sasl_plain_password"] == "s3cret-pw"
    assert kwargs["ssl_cafile"] == "/etc/ca.pem"
    assert s.producer_kwargs() == kwargs
    assert "s3cret-pw" not in repr(s)
    assert "s3cret-pw" not in s.describe()
    assert "SCRAM-SHA-512" in s.describe()


def test_plaintext_has_no_auth_arguments() -> None:
    kwargs = KafkaSettings("127.0.0.1:9092").producer_kwargs()
    assert kwargs["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in kwargs and "ssl_cafile" not in kwargs


def test_default_bootstrap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFER_BOOTSTRAP", "10.0.0.1:19092")
    assert KafkaSettings().bootstrap_servers == "10.0.0.1:19092"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_PLAINTEXT"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "sasl_username"),
        ({"sasl_mechanism": "PLAIN"}, "SASL_PLAINTEXT or SASL_SSL"),
        ({"bootstrap_servers": " "}, "bootstrap_servers"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        KafkaSettings(**kwargs)  # type: ignore[arg-type]


def test_record_coords_and_headers() -> None:
    r = Record("cam", 3, 1042, None, b"", (("Frame-Seq", b"1"), ("frame-seq", b"2")), 0, 5)
    assert r.coords == "cam[3]@1042"
    assert r.header("FRAME-SEQ") == b"2"
    assert r.header("nope") is None
    assert r.consumed_wall_ms > 1_600_000_000_000


def test_librdkafka_config_maps_sasl_ssl_and_keeps_the_password_out_of_describe() -> None:
    s = KafkaSettings(
        "b1:9093, b2:9093",
        client_id="svc-1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="s3cret-pw",
        ssl_cafile="/etc/ca.pem",
        ssl_certfile="/etc/client.pem",
        ssl_keyfile="/etc/client.key",
    )
    assert s.librdkafka_config() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "client.id": "svc-1",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret-pw",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/client.pem",
        "ssl.key.location": "/etc/client.key",
    }


def test_librdkafka_config_for_plaintext_has_no_auth_properties() -> None:
    assert KafkaSettings("127.0.0.1:9092").librdkafka_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "streamfer",
        "security.protocol": "PLAINTEXT",
    }
    sasl_plain = KafkaSettings(
        "b1:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password="p",
    ).librdkafka_config()
    assert "ssl.endpoint.identification.algorithm" not in sasl_plain
    assert sasl_plain["sasl.mechanism"] == "PLAIN"
