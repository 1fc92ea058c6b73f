"""SASL_SSL on a real broker: the project's clients log in, bad credentials and CAs fail clearly.

Everything here runs against the session's second broker (``sasl_ssl_broker``):
SCRAM-SHA-512 over TLS with a certificate from the project's own CA.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from kafkakit import fast_options, records, resolve_many, unused_port

from streamfer.errors import BrokerError, StreamError
from streamfer.streams.admin import create_topics, topic_partitions
from streamfer.streams.client import ClientFactory, ProducerOptions
from streamfer.streams.local.broker import LocalBroker
from streamfer.streams.local.broker_cli import broker as broker_cli
from streamfer.streams.local.secure import SaslSslListener, ensure_tls_material
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource

pytestmark = pytest.mark.integration

# A refused login must fail on the broker's answer, not when the client gives up: the
# clients below would wait this long for a broker, and the tests allow a third of it.
CLIENT_TIMEOUT_MS = 30_000


def secure(broker: LocalBroker) -> SaslSslListener:
    listener = broker.sasl_ssl
    assert listener is not None
    return listener


def new_topic(settings: KafkaSettings, partitions: int) -> str:
    name = f"t-sasl-{uuid.uuid4().hex[:10]}"
    create_topics(settings, {name: partitions})
    return name


def test_produce_and_consume_over_sasl_ssl(
    sasl_ssl_broker: LocalBroker, factory: ClientFactory
) -> None:
    settings = secure(sasl_ssl_broker).settings()
    topic = new_topic(settings, 2)  # the admin client logs in over SASL_SSL too
    assert topic_partitions(settings, [topic]) == {topic: 2}
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(40)}
    errors: list[Exception] = []
    with KafkaSink(settings, factory=factory) as sink:
        for key, value in sent.items():
            sink.send(topic, value, key, on_delivery=lambda err, _m: err and errors.append(err))
        sink.flush(30)
    assert errors == []

    group = f"g-{uuid.uuid4().hex[:12]}"
    received: list[Record] = []
    deadline = time.monotonic() + 30
    with KafkaSource(settings, [topic], fast_options(group), factory=factory) as source:
        while len(received) < len(sent):
            assert time.monotonic() < deadline, f"{len(received)} of {len(sent)} records"
            batch = records(source.poll(0.2))
            received += batch
            resolve_many(source, batch)
    assert {r.key: r.value for r in received} == sent


def test_wrong_password_fails_start_naming_listener_protocol_and_mechanism(
    sasl_ssl_broker: LocalBroker,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    factory: ClientFactory,
) -> None:
    listener = secure(sasl_ssl_broker)
    good = listener.settings()
    wrong = f"not-{uuid.uuid4().hex}"
    bad = dataclasses.replace(good, sasl_password=wrong)
    caplog.set_level(logging.DEBUG)
    starts = {
        "producer": lambda: KafkaSink(
            bad, ProducerOptions(max_block_ms=CLIENT_TIMEOUT_MS), factory
        ).start(),
        "consumer": lambda: KafkaSource(
            bad, ["any"], fast_options("g-never", request_timeout_ms=CLIENT_TIMEOUT_MS),
            factory=factory,
        ).start(),
    }
    for client, start in starts.items():
        began = time.monotonic()
        with pytest.raises(StreamError) as failed:
            start()
        assert time.monotonic() - began < CLIENT_TIMEOUT_MS / 3000, client
        message = str(failed.value)
        assert message.startswith(f"{listener.bootstrap} | SASL_SSL SCRAM-SHA-512 "), message
        assert "login as 'streamfer' refused" in message and "invalid credentials" in message
        assert wrong not in message and good.sasl_password not in message
    out, err = capfd.readouterr()
    for secret in (wrong, good.sasl_password):
        assert secret
        assert secret not in caplog.text + out + err


def test_untrusted_certificate_fails_start_naming_the_listener(
    sasl_ssl_broker: LocalBroker, tmp_path: Path, factory: ClientFactory
) -> None:
    listener = secure(sasl_ssl_broker)
    stranger = SaslSslListener("127.0.0.1:1", tmp_path / "other-ca")
    ensure_tls_material(stranger)  # a CA of its own, which never signed the broker's certificate
    bad = dataclasses.replace(listener.settings(), ssl_cafile=str(stranger.ca_file))
    began = time.monotonic()
    with pytest.raises(StreamError) as failed:
        KafkaSink(bad, ProducerOptions(max_block_ms=CLIENT_TIMEOUT_MS), factory).start()
    assert time.monotonic() - began < CLIENT_TIMEOUT_MS / 3000
    message = str(failed.value)
    assert message.startswith(f"{listener.bootstrap} | SASL_SSL SCRAM-SHA-512 TLS handshake failed")
    assert "certificate is not trusted" in message
    assert f"kafka.ssl_cafile ({stranger.ca_file}) must hold the CA" in message


def test_start_again_reports_the_listener_and_the_password_file_only(
    sasl_ssl_broker: LocalBroker,
) -> None:
    listener = secure(sasl_ssl_broker)
    args = ["--port", str(sasl_ssl_broker.port), "--data-dir", str(sasl_ssl_broker.data_dir)]
    done = CliRunner().invoke(broker_cli, ["start", *args, "--sasl-ssl"])
    assert done.exit_code == 0, done.output
    assert done.stdout == f"{sasl_ssl_broker.bootstrap}\n"  # stdout: what scripts capture
    assert "broker already running" in done.stderr
    assert (
        f"secure listener: SASL_SSL {listener.bootstrap} (SCRAM-SHA-512, user streamfer; "
        f"password in {listener.password_file}, CA {listener.ca_file})"
    ) in done.stderr
    assert listener.settings().sasl_password not in done.output


def test_status_names_the_password_file_but_never_the_password(
    sasl_ssl_broker: LocalBroker,
) -> None:
    listener = secure(sasl_ssl_broker)
    args = ["--port", str(sasl_ssl_broker.port), "--data-dir", str(sasl_ssl_broker.data_dir)]
    done = CliRunner().invoke(broker_cli, ["status", *args])
    assert done.exit_code == 0, done.output
    assert f"sasl_ssl:  {listener.bootstrap} (SCRAM-SHA-512, user streamfer)" in done.output
    assert f"password:  in {listener.password_file} (mode 0600; not printed)" in done.output
    assert f"ca file:   {listener.ca_file}" in done.output
    assert listener.settings().sasl_password not in done.output
    for private in (listener.password_file, listener.keystore_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE(listener.files_dir.stat().st_mode) == 0o700


def test_a_running_broker_without_that_listener_is_not_reused(
    sasl_ssl_broker: LocalBroker,
) -> None:
    other = LocalBroker(
        port=sasl_ssl_broker.port,
        controller_port=sasl_ssl_broker.controller_port,
        data_dir=sasl_ssl_broker.data_dir,
        sasl_ssl_port=sasl_ssl_broker.port + 7,
    )
    with pytest.raises(BrokerError, match=r"already running with SASL_SSL on 127\.0\.0\.1:\d+"):
        other.start()


def test_secure_start_on_a_data_dir_formatted_without_the_user_fails(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "meta.properties").write_text("formatted before, plaintext only\n")
    broker = LocalBroker(
        port=unused_port(),
        controller_port=unused_port(),
        data_dir=tmp_path,
        sasl_ssl_port=unused_port(),
    )
    with pytest.raises(BrokerError, match="formatted without the SASL_SSL user"):
        broker.start(timeout_s=10)
