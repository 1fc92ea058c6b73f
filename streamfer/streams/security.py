"""Why a TLS or SASL connection failed, said plainly, and a login check that says it early.

``explain_connect_failure(settings, failure)`` turns what a Kafka client reports
(a librdkafka error string, a kafka-python exception, an ``ssl`` error) into::

    127.0.0.1:9094 | SASL_SSL SCRAM-SHA-512 login as 'streamfer' refused (...).
    Note: check kafka.sasl_username and the password (...); it is not shown here

naming the listener, the protocol and the mechanism, and never the password
(scrubbed from the client's text too). Client adapters call it wherever a
connection failure reaches them.

``PasswordFilter`` blanks passwords in the configurations client libraries log
(kafka-python's admin client logs its whole configuration at DEBUG).

``check_login(settings)`` makes one short metadata request through librdkafka
before a client is created and raises that message at once when the cluster
refuses the certificate or the credentials. It exists because kafka-python
3.0 retries a refused login until its bootstrap timeout and then reports only
"Unable to bootstrap"; librdkafka names the refusal at the first attempt.
Anything that is not a refusal (a broker still starting, a closed port) is
left to the client's own retries and timeout. librdkafka says only "certificate
could not be verified" whatever the cause, so a refused certificate is looked
at once more with Python's ``ssl``, which names it: not signed by a trusted CA,
expired, or issued for another name.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streamfer.errors import ConfigError, StreamError

if TYPE_CHECKING:
    from streamfer.streams.settings import KafkaSettings

LOGIN_CHECK_TIMEOUT_S = 5.0
# librdkafka error codes that mean "this cluster will never accept this client as configured"
_REFUSALS = frozenset((KafkaError._AUTHENTICATION, KafkaError._SSL))

_ADDRESS_PATTERNS = (
    re.compile(r"(?:plaintext|ssl|sasl_plaintext|sasl_ssl)://([^/\s]+)/", re.IGNORECASE),
    re.compile(r"\[([^\s\[\]<]+:\d+)<-"),  # kafka-python transports: [host:port<-localport]
)
# librdkafka's "sasl_ssl://host:port/bootstrap: " before, and "(after 3ms in state X)" after
_CLIENT_PREFIX = re.compile(r"^\w+://[^/\s]+/[^:\s]*:\s*")
_TIMING = re.compile(r"\s*\(after \d+ms in state \w+\)")

# (pattern, problem, note) per kind of failure, most specific first; {cafile}, {host} and
# {user} are filled in
_KINDS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"unsupported sasl mechanism|does not support .* sasl mechanism", re.I),
        "mechanism not enabled on this listener",
        "set kafka.sasl_mechanism to one the listener offers (see the reason)",
    ),
    (
        re.compile(r"authentication failed|invalid credentials|SaslAuthenticationFailed", re.I),
        "login as {user} refused",
        "check kafka.sasl_username and the password (kafka.sasl_password or "
        "kafka.sasl_password_file); it is not shown here",
    ),
    (
        re.compile(r"certificate has expired|certificate is not yet valid", re.I),
        "TLS handshake failed: the broker's certificate is outside its validity period",
        "renew the broker certificate (or check this machine's clock)",
    ),
    (
        re.compile(r"hostname mismatch|ip address mismatch", re.I),
        "TLS handshake failed: the broker's certificate does not name {host}",
        "connect by a name or address listed in the certificate's subjectAltName",
    ),
    (
        re.compile(r"certificate verify failed|could not be verified|self[- ]signed", re.I),
        "TLS handshake failed: the broker's certificate is not trusted",
        "kafka.ssl_cafile ({cafile}) must hold the CA that signed the broker certificate",
    ),
    (
        re.compile(r"PLAINTEXT broker listener|wrong version number|http request", re.I),
        "TLS handshake failed: this listener does not speak TLS",
        "point kafka.bootstrap_servers at the cluster's SSL or SASL_SSL listener",
    ),
)


def explain_connect_failure(
    settings: KafkaSettings, failure: BaseException | str, listener: str | None = None
) -> str:
    """``listener | protocol mechanism problem (reason). Note: fix``, without the password.

    ``listener`` (host:port) when the caller knows it; else it is read from the
    failure's text, else the configured bootstrap servers are named.
    """
    text = _scrub(str(failure), settings.sasl_password)
    listener = listener or _listener(text, settings)
    auth = " ".join(filter(None, (settings.security_protocol, settings.sasl_mechanism)))
    reason = _TIMING.sub("", _CLIENT_PREFIX.sub("", text)).strip()
    fill = {
        "cafile": settings.ssl_cafile or "unset: the system's CA store",
        "host": listener.rsplit(":", 1)[0] if "," not in listener else "the address dialled",
        "user": repr(settings.sasl_username),
    }
    for pattern, problem, note in _KINDS:
        if pattern.search(text):
            return (
                f"{listener} | {auth} {problem.format(**fill)} ({reason}). "
                f"Note: {note.format(**fill)}"
            )
    return (
        f"{listener} | {auth} connection failed ({reason}). "
        f"Note: is the broker up, and does this listener speak {settings.security_protocol}?"
    )


def check_login(settings: KafkaSettings, timeout_s: float = LOGIN_CHECK_TIMEOUT_S) -> None:
    """Raise StreamError (explained) if the cluster refuses this client's TLS or SASL login.

    A no-op for PLAINTEXT. Returns on success, on the first error that is not a
    refusal, and after ``timeout_s`` without an answer.
    """
    if settings.security_protocol == "PLAINTEXT":
        return
    errors: list[KafkaError] = []
    # log_level 0: the refusal comes back through error_cb; librdkafka's own log lines
    # would go to stderr, outside the process's logging
    probe = AdminClient({**settings.librdkafka_config(), "log_level": 0}, error_cb=errors.append)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            probe.list_topics(timeout=0.1)
            return
        except KafkaException:
            probe.poll(0)  # serves error_cb
        refused = next((e for e in errors if e.code() in _REFUSALS), None)
        if refused is not None:
            raise StreamError(_explain_refusal(settings, refused))
        if errors:
            return


class PasswordFilter(logging.Filter):
    """A logging filter that shows ``***`` for every ``*password*`` key of a logged mapping.

    Put it on the logger that logs a client configuration (``streamfer.streams.admin`` does,
    for ``kafka.admin.client``): a logger's filters see only that logger's records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):  # one mapping argument: logging keeps it bare
            record.args = _without_passwords(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(
                _without_passwords(a) if isinstance(a, Mapping) else a for a in record.args
            )
        return True


def _without_passwords(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: "***" if "password" in str(k) and v else v for k, v in mapping.items()}


def _explain_refusal(settings: KafkaSettings, refused: KafkaError) -> str:
    text = refused.str()
    listener = _listener(text, settings)
    if refused.code() == KafkaError._SSL and "," not in listener:
        detail = _certificate_problem(settings, listener)
        if detail is not None:
            return explain_connect_failure(settings, detail, listener)
    return explain_connect_failure(settings, text)


def _certificate_problem(settings: KafkaSettings, listener: str) -> str | None:
    """What Python's ``ssl`` finds wrong with ``listener``'s certificate, if it finds anything."""
    host, _, port = listener.rpartition(":")
    try:
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
        with (
            socket.create_connection((host, int(port)), timeout=2.0) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"certificate verify failed: {exc.verify_message}"
    except (OSError, ValueError):  # unreachable now, or files it cannot load: say what we know
        return None


def read_password_file(path: Path) -> str:
    """The password kept in ``path``; one trailing line break (``echo pw > file``) is not part."""
    try:
        text = path.read_bytes().decode("utf-8")  # bytes as written: no newline translation
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{path} | cannot read the SASL password file ({reason}). "
            "Note: expected a file holding the password (kafka.sasl_password_file)"
        ) from None
    return text.removesuffix("\n").removesuffix("\r")


def _listener(text: str, settings: KafkaSettings) -> str:
    for pattern in _ADDRESS_PATTERNS:
        found = pattern.search(text)
        if found:
            return found.group(1)
    return settings.bootstrap_servers


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
