"""What the local broker's optional SASL_SSL listener needs, made by the project itself.

``LocalBroker(sasl_ssl_port=N)`` keeps its PLAINTEXT listener and opens a
second one on ``127.0.0.1:N`` that speaks TLS and authenticates with
SCRAM-SHA-512. Everything it needs lives in ``<data dir>/sasl-ssl/`` (mode 0700):

- ``ca.pem``: a self-signed CA certificate; clients trust it (``ssl_cafile``).
  The CA's private key is never written: it signs the broker certificate and is
  dropped, so nothing else can ever be signed by it.
- ``broker.pem`` (0600): the broker's private key (PKCS#8, unencrypted) and its
  certificate chain, SAN ``127.0.0.1`` and ``localhost``; the broker reads it
  as a PEM keystore (``ssl.keystore.type=PEM``).
- ``password`` (0600): the SCRAM user's password, the only place it is kept.
  A pipeline config points ``kafka.sasl_password_file`` at it.

The SCRAM user is created when the log directory is formatted: StorageTool
gets the salted password, never the password itself, so the password appears
on no command line and in no tool output. (The salted form can still log in,
and the tool's command line is visible to local users while it runs: fine for
a loopback development broker, not a way to provision real credentials.)
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streamfer.streams.security import read_password_file
from streamfer.streams.settings import KafkaSettings, SaslMechanism

SECURE_DIR_NAME = "sasl-ssl"
SCRAM_USER = "streamfer"
SCRAM_MECHANISM: SaslMechanism = "SCRAM-SHA-512"
# Kafka's own default for new SCRAM credentials (kafka-configs); clients repeat it per login.
SCRAM_ITERATIONS = 4096
# The broker certificate names the only addresses the listener binds or is called by.
CERT_IP = "127.0.0.1"
CERT_DNS = "localhost"
CERT_VALID_DAYS = 730
# A certificate this close to expiry is made anew on start, so a long-lived data dir keeps working.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class SaslSslListener:
    """Where the secure listener is and the files a client needs; the password stays in its file.

    ``kafka_section()`` is the ``kafka:`` mapping of a pipeline config for it;
    ``settings()`` the streams package's connection settings (reads the password).
    """

    bootstrap: str
    files_dir: Path
    username: str = SCRAM_USER
    mechanism: SaslMechanism = SCRAM_MECHANISM

    @property
    def ca_file(self) -> Path:
        return self.files_dir / "ca.pem"

    @property
    def keystore_file(self) -> Path:
        return self.files_dir / "broker.pem"

    @property
    def password_file(self) -> Path:
        return self.files_dir / "password"

    def describe(self) -> str:
        """One line safe to print: the password's file, never the password."""
        return (
            f"SASL_SSL {self.bootstrap} ({self.mechanism}, user {self.username}; "
            f"password in {self.password_file}, CA {self.ca_file})"
        )

    def kafka_section(self) -> dict[str, Any]:
        """The ``kafka:`` section of a pipeline config (``pipeline.config.parse_config``)."""
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": self.mechanism,
            "sasl_username": self.username,
            "sasl_password_file": str(self.password_file),
            "ssl_cafile": str(self.ca_file),
        }

    def settings(self, client_id: str = "streamfer") -> KafkaSettings:
        """Connection settings for the project's clients (the password read from its file)."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            client_id=client_id,
            security_protocol="SASL_SSL",
            sasl_mechanism=self.mechanism,
            sasl_username=self.username,
            sasl_password=read_password_file(self.password_file),
            ssl_cafile=str(self.ca_file),
        )


def create_password(listener: SaslSslListener) -> str:
    """A new random password, written to the listener's password file (0600)."""
    password = secrets.token_urlsafe(24)
    _private_dir(listener.files_dir)
    _write_private(listener.password_file, password.encode())
    return password


def scram_format_argument(password: str, username: str = SCRAM_USER) -> str:
    """StorageTool's ``--add-scram`` value with the salted password (RFC 5802 Hi()) only."""
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
    return (
        f"{SCRAM_MECHANISM}=[name={username},iterations={SCRAM_ITERATIONS},"
        f'salt="{_b64(salt)}",saltedpassword="{_b64(salted)}"]'
    )


def ensure_tls_material(listener: SaslSslListener, now: dt.datetime | None = None) -> bool:
    """Make the CA and the broker keystore unless a valid pair exists; True if made anew."""
    now = now or dt.datetime.now(dt.UTC)
    if _still_valid(listener, now):
        return False
    _private_dir(listener.files_dir)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _broker_certificate(key, ca_key, ca_cert, now)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(
        listener.keystore_file, key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    )
    listener.ca_file.write_bytes(ca_cert.public_bytes(pem))
    return True


def _still_valid(listener: SaslSslListener, now: dt.datetime) -> bool:
    if not (listener.ca_file.is_file() and listener.keystore_file.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(listener.keystore_file.read_bytes())
    except ValueError:
        return False
    return bool(cert.not_valid_after_utc - RENEW_BEFORE > now)


# A CA that signs certificates and nothing else.
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamfer local broker CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock steps
        .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _broker_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: dt.datetime,
) -> x509.Certificate:
    san = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address(CERT_IP)), x509.DNSName(CERT_DNS)]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_DNS)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner can read, from its first byte on."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
