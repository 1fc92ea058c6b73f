"""The local broker's secure listener, no broker running: certificates, SCRAM user, config."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from streamfer.streams.local.broker import LocalBroker
from streamfer.streams.local.secure import (
    CERT_VALID_DAYS,
    SCRAM_ITERATIONS,
    SaslSslListener,
    ensure_tls_material,
    scram_format_argument,
)


@pytest.fixture
def listener(tmp_path: Path) -> SaslSslListener:
    return SaslSslListener("127.0.0.1:9094", tmp_path / "sasl-ssl")


def test_broker_certificate_is_signed_by_the_ca_for_127_0_0_1_and_localhost(
    listener: SaslSslListener,
) -> None:
    assert ensure_tls_material(listener) is True
    ca = x509.load_pem_x509_certificate(listener.ca_file.read_bytes())
    keystore = listener.keystore_file.read_bytes()
    leaf, *chain = x509.load_pem_x509_certificates(keystore)
    assert [c.subject for c in chain] == [ca.subject]
    store = Store([ca])
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verified = PolicyBuilder().store(store).build_server_verifier(name).verify(leaf, [])
        assert verified[-1] == ca
    with pytest.raises(VerificationError, match="subjectAltName"):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("example.com")).verify(
            leaf, []
        )
    # the keystore's key is the certificate's (PKCS#8, unencrypted: what a PEM keystore reads)
    assert b"-----BEGIN PRIVATE KEY-----" in keystore
    key = load_pem_private_key(keystore, password=None)
    assert key.public_key() == leaf.public_key()
    # the CA's key is gone: nothing else can be signed with it
    assert sorted(p.name for p in listener.files_dir.iterdir()) == ["broker.pem", "ca.pem"]
    assert stat.S_IMODE(listener.keystore_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(listener.files_dir.stat().st_mode) == 0o700


def test_material_is_kept_while_valid_and_made_anew_before_it_expires(
    listener: SaslSslListener,
) -> None:
    assert ensure_tls_material(listener) is True
    first = listener.ca_file.read_bytes()
    assert ensure_tls_material(listener) is False
    assert listener.ca_file.read_bytes() == first
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=CERT_VALID_DAYS - 10)
    assert ensure_tls_material(listener, now=soon) is True
    assert listener.ca_file.read_bytes() != first


def test_scram_argument_carries_the_salted_password_only() -> None:
    argument = scram_format_argument("s3cret-pw", "alice")
    assert "s3cret-pw" not in argument
    found = re.fullmatch(
        r'SCRAM-SHA-512=\[name=alice,iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]',
        argument,
    )
    assert found is not None
    iterations, salt, salted = int(found[1]), base64.b64decode(found[2]), found[3]
    assert iterations == SCRAM_ITERATIONS >= 4096  # Kafka refuses fewer for SCRAM-SHA-512
    # RFC 5802 SaltedPassword = Hi(password, salt, i), i.e. PBKDF2 with the mechanism's hash
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret-pw", salt, iterations)
    assert base64.b64decode(salted) == expected
    assert scram_format_argument("s3cret-pw", "alice") != argument  # a fresh salt each time


def test_listener_settings_and_kafka_section_name_the_password_file(
    listener: SaslSslListener,
) -> None:
    listener.files_dir.mkdir()
    listener.password_file.write_text("pw-from-file\n")
    section = listener.kafka_section()
    assert section == {
        "bootstrap_servers": "127.0.0.1:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "streamfer",
        "sasl_password_file": str(listener.password_file),
        "ssl_cafile": str(listener.ca_file),
    }
    settings = listener.settings()
    assert settings.sasl_password == "pw-from-file"
    assert "pw-from-file" not in listener.describe() + repr(listener)


PLAINTEXT_LISTENER_LINES = """\
listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093
advertised.listeners=PLAINTEXT://127.0.0.1:19092
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
"""


def test_plaintext_config_is_unchanged_by_the_secure_mode(tmp_path: Path) -> None:
    text = LocalBroker(port=19092, data_dir=tmp_path).render_config().read_text()
    assert PLAINTEXT_LISTENER_LINES in text
    assert "SASL" not in text and "ssl." not in text
    assert not (tmp_path / "sasl-ssl").exists()


def test_secure_config_adds_the_listener_and_a_pem_keystore(tmp_path: Path) -> None:
    broker = LocalBroker(port=19092, data_dir=tmp_path, sasl_ssl_port=19094)
    text = broker.render_config().read_text()
    assert (
        "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
        "SASL_SSL://127.0.0.1:19094\n"
    ) in text
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094\n" in text
    assert "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT," in text
    assert "inter.broker.listener.name=PLAINTEXT\n" in text
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512\n" in text
    assert "ssl.keystore.type=PEM\n" in text
    secure = broker.sasl_ssl
    assert secure is not None and secure.keystore_file.is_file()
    assert f"ssl.keystore.location={secure.keystore_file}\n" in text
