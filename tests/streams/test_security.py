"""Connection failures explained (listener, protocol, mechanism; never the password)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from streamfer.errors import ConfigError, StreamError
from streamfer.streams.local.secure import SaslSslListener, ensure_tls_material
from streamfer.streams.security import (
    PasswordFilter,
    check_login,
    explain_connect_failure,
    read_password_file,
)
from streamfer.streams.settings import KafkaSettings

PASSWORD = "pw-7f3a9c"
SETTINGS = KafkaSettings(
    "b1:9094,b2:9094",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="svc",
    sasl_password=PASSWORD,
    ssl_cafile="/etc/streamfer/ca.pem",
)

# What librdkafka (confluent-kafka) reports through error_cb, as seen on the local broker.
RDKAFKA_AUTH = (
    "sasl_ssl://b2:9094/bootstrap: SASL authentication error: Authentication failed during "
    "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
    "(after 308ms in state AUTH_REQ)"
)
RDKAFKA_UNTRUSTED = (
    "sasl_ssl://b1:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified, verify that "
    "ssl.ca.location is correctly configured or root CA certificates are installed "
    "(install ca-certificates package) (after 2ms in state SSL_HANDSHAKE)"
)
RDKAFKA_MECHANISM = (
    "sasl_ssl://b1:9094/bootstrap: SASL SCRAM-SHA-256 mechanism handshake failed: Broker: "
    "Unsupported SASL mechanism: broker's supported mechanisms: SCRAM-SHA-512 "
    "(after 301ms in state AUTH_HANDSHAKE)"
)
RDKAFKA_PLAINTEXT_PORT = (
    "sasl_ssl://b1:9092/bootstrap: SSL handshake failed: Disconnected: SSL connection closed "
    "by peer: connecting to a PLAINTEXT broker listener? (after 0ms in state SSL_HANDSHAKE)"
)


def test_refused_login_names_listener_protocol_mechanism_and_user() -> None:
    message = explain_connect_failure(SETTINGS, RDKAFKA_AUTH)
    assert message == (
        "b2:9094 | SASL_SSL SCRAM-SHA-512 login as 'svc' refused (SASL authentication error: "
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-512). Note: check kafka.sasl_username and the password "
        "(kafka.sasl_password or kafka.sasl_password_file); it is not shown here"
    )


def test_untrusted_certificate_names_the_ca_file() -> None:
    message = explain_connect_failure(SETTINGS, RDKAFKA_UNTRUSTED)
    assert message.startswith(
        "b1:9094 | SASL_SSL SCRAM-SHA-512 TLS handshake failed: the broker's certificate is "
        "not trusted (SSL handshake failed: error:0A000086"
    )
    assert message.endswith(
        "Note: kafka.ssl_cafile (/etc/streamfer/ca.pem) must hold the CA that signed the "
        "broker certificate"
    )
    assert "after 2ms" not in message


@pytest.mark.parametrize(
    ("failure", "problem"),
    [
        (RDKAFKA_MECHANISM, "mechanism not enabled on this listener"),
        (RDKAFKA_PLAINTEXT_PORT, "this listener does not speak TLS"),
        # kafka-python 3.0 (exceptions and the transport's log text)
        (
            "[Error 58] SaslAuthenticationFailedError: Authentication failed during "
            "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
            "login as 'svc' refused",
        ),
        (
            "Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "self-signed certificate in certificate chain (_ssl.c:1006)",
            "certificate is not trusted",
        ),
        (
            "<KafkaSSLTransport [b1:9094<-50950]>: Handshake failed: [SSL: WRONG_VERSION_NUMBER] "
            "wrong version number",
            "this listener does not speak TLS",
        ),
        # the ssl module's own errors
        (
            ssl.SSLCertVerificationError(
                1,
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                "IP address mismatch, certificate is not valid for '10.0.0.7'",
            ),
            "certificate does not name the address dialled",
        ),
        (
            "certificate verify failed: certificate has expired",
            "certificate is outside its validity period",
        ),
        ("Connect to ipv4#10.0.0.7:9094 failed: Connection refused", "connection failed"),
    ],
)
def test_each_kind_of_failure_is_named(failure: BaseException | str, problem: str) -> None:
    message = explain_connect_failure(SETTINGS, failure)
    assert re.match(rf"\S+ \| SASL_SSL SCRAM-SHA-512 .*{re.escape(problem)}", message), message
    assert ". Note: " in message


def test_the_listener_comes_from_the_failure_else_from_the_settings() -> None:
    transport = "<KafkaSSLTransport [b2:9094<-4711]>: Abort (certificate verify failed)"
    assert explain_connect_failure(SETTINGS, transport).startswith("b2:9094 | ")
    assert explain_connect_failure(SETTINGS, "boom").startswith("b1:9094,b2:9094 | ")


def test_the_password_never_appears_even_when_the_client_echoes_it() -> None:
    echoed = f"{RDKAFKA_AUTH} (sasl.password={PASSWORD})"
    message = explain_connect_failure(SETTINGS, echoed)
    assert PASSWORD not in message and "sasl.password=***" in message
    for failure in (RDKAFKA_AUTH, RDKAFKA_UNTRUSTED, "boom"):
        assert PASSWORD not in explain_connect_failure(SETTINGS, failure)


def test_plaintext_only_protocol_is_named_alone() -> None:
    plain = KafkaSettings("b1:9093", security_protocol="SSL")
    message = explain_connect_failure(plain, RDKAFKA_UNTRUSTED)
    assert message.startswith("b1:9094 | SSL TLS handshake failed")
    assert "kafka.ssl_cafile (unset: the system's CA store)" in message


def test_login_check_is_a_no_op_for_plaintext() -> None:
    # nothing listens on port 1: a check that tried to connect would wait or fail
    check_login(KafkaSettings("127.0.0.1:1"), timeout_s=0.0)


def test_password_filter_blanks_logged_configurations(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.password-filter")
    logger.addFilter(PasswordFilter())
    config = {"sasl_plain_username": "svc", "sasl_plain_password": PASSWORD, "ssl_password": None}
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.debug("Starting with configuration: %s", config)
        logger.debug("two: %s %s", "x", config)
    assert PASSWORD not in caplog.text
    assert caplog.text.count("'sasl_plain_password': '***'") == 2
    assert "'ssl_password': None" in caplog.text and "'sasl_plain_username': 'svc'" in caplog.text
    assert config["sasl_plain_password"] == PASSWORD  # the client's own dict is left alone


def test_password_file_loses_one_line_break_and_names_itself_when_unreadable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "password"
    path.write_text("p w \n")
    assert read_password_file(path) == "p w "
    path.write_text("pw\r\n\n")
    assert read_password_file(path) == "pw\r\n"
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'absent'} \| cannot read the SASL"):
        read_password_file(tmp_path / "absent")


@contextmanager
def tls_server(keystore: Path, host: str) -> Iterator[int]:
    """A TLS endpoint on ``host`` serving ``keystore`` (key + chain) that only shakes hands."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(keystore)
    server = socket.create_server((host, 0))
    server.settimeout(0.1)  # how often the loop looks at ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, suppress(OSError):  # a client that gives up mid-handshake is fine
                conn.settimeout(2)
                context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


def ssl_settings(address: str, ca_file: Path) -> KafkaSettings:
    return KafkaSettings(address, security_protocol="SSL", ssl_cafile=str(ca_file))


def test_a_certificate_for_another_address_is_named_as_such(tmp_path: Path) -> None:
    local = SaslSslListener("127.0.0.1:1", tmp_path)
    ensure_tls_material(local)  # names 127.0.0.1 and localhost; served on 127.0.0.2 below
    with tls_server(local.keystore_file, "127.0.0.2") as port, pytest.raises(StreamError) as failed:
        check_login(ssl_settings(f"127.0.0.2:{port}", local.ca_file), timeout_s=5)
    assert str(failed.value).startswith(
        f"127.0.0.2:{port} | SSL TLS handshake failed: the broker's certificate does not name "
        "127.0.0.2 (certificate verify failed: IP address mismatch"
    )


def test_an_expired_certificate_is_named_as_such(tmp_path: Path) -> None:
    old = SaslSslListener("127.0.0.1:1", tmp_path)
    ensure_tls_material(old, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=800))
    expired = pytest.raises(StreamError, match="certificate is outside its validity period")
    with tls_server(old.keystore_file, "127.0.0.1") as port, expired:
        check_login(ssl_settings(f"127.0.0.1:{port}", old.ca_file), timeout_s=5)
