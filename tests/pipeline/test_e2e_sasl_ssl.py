"""A whole pipeline over SASL_SSL (SCRAM-SHA-512) on the session's secure broker.

Public API only: the ``kafka:`` section comes from the broker's listener
(``SaslSslListener.kafka_section()``: the password stays in its file), the
config from ``parse_config``, the run from ``Pipeline``; ``streamfer run`` as a
process shows that neither its logs nor ``validate`` print the password.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import yaml
from e2e_helpers import MODELS, REPO, config_doc, decisions, read_all, wait_for

from streamfer.errors import StreamError
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import PipelineConfig, parse_config
from streamfer.streams.admin import create_topics
from streamfer.streams.local.broker import LocalBroker
from streamfer.streams.local.feeds import transaction_feed
from streamfer.streams.local.producers import produce
from streamfer.streams.local.secure import SaslSslListener, ensure_tls_material
from streamfer.streams.sink import KafkaSink

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]

N = 150


def secure(broker: LocalBroker) -> SaslSslListener:
    listener = broker.sasl_ssl
    assert listener is not None
    return listener


def topics(listener: SaslSslListener) -> tuple[str, str, str]:
    """Fresh input (3 partitions) and output topics, and a group, made over SASL_SSL."""
    tag = uuid.uuid4().hex[:10]
    src, out = f"t-sasl-tx-{tag}", f"t-sasl-decisions-{tag}"
    create_topics(listener.settings(), {src: 3, out: 1})
    return src, out, f"g-sasl-{tag}"


def doc(kafka: dict[str, Any], group: str, src: str, out: str) -> dict[str, Any]:
    stream = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "batching": {"max_batch": 16, "max_wait_ms": 5},
    }  # fmt: skip
    return config_doc(kafka["bootstrap_servers"], group, [stream], {"fraud": MODELS / "fraud.onnx"},
                      kafka=kafka)  # fmt: skip


def config(kafka: dict[str, Any], group: str, src: str, out: str) -> PipelineConfig:
    return parse_config(doc(kafka, group, src, out), "sasl-ssl.yaml")


def test_every_transaction_gets_a_decision_over_sasl_ssl(
    sasl_ssl_broker: LocalBroker, client_name: str
) -> None:
    listener = secure(sasl_ssl_broker)
    src, out, group = topics(listener)
    with KafkaSink(listener.settings(client_id="feed")) as sink:
        sent = produce(sink, src, transaction_feed(seed=11), count=N)
    assert (sent.sent, sent.acked, sent.failed) == (N, N, 0)

    cfg = config({**listener.kafka_section(), "client": client_name}, group, src, out)
    assert cfg.kafka.security_protocol == "SASL_SSL" and cfg.kafka.sasl_password is None
    with Pipeline(cfg) as pipe:
        pipe.wait_ready(30)
        wait_for(lambda: pipe.stats()["payments"].resolved >= N, 60, "every record resolved")
        snap = pipe.stats()["payments"]
    assert (snap.consumed, snap.decided, snap.dead_lettered, snap.dropped) == (N, N, {}, {})
    # read back on the same broker's PLAINTEXT listener: independent of the path under test
    got = decisions(read_all(sasl_ssl_broker.bootstrap, out, lambda m: len(m) >= N))
    coords = {(d["source"]["partition"], d["source"]["offset"]) for d in got}
    assert len(got) == N and len(coords) == N
    assert {d["source"]["topic"] for d in got} == {src}


def test_wrong_password_fails_pipeline_start_without_showing_it(
    sasl_ssl_broker: LocalBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    listener = secure(sasl_ssl_broker)
    src, out, group = topics(listener)
    wrong = f"not-{uuid.uuid4().hex}"
    (tmp_path / "password").write_text(wrong + "\n")
    kafka = {**listener.kafka_section(), "sasl_password_file": str(tmp_path / "password")}
    caplog.set_level(logging.DEBUG)
    pipe = Pipeline(config(kafka, group, src, out))
    with pytest.raises(StreamError) as failed:
        pipe.start()
    message = str(failed.value)
    assert message.startswith(f"{listener.bootstrap} | SASL_SSL SCRAM-SHA-512 login as "), message
    assert "refused" in message
    real = listener.settings().sasl_password
    assert real
    out_text, err_text = capfd.readouterr()
    for secret in (wrong, real):
        assert secret not in message + caplog.text + out_text + err_text


def test_untrusted_certificate_fails_pipeline_start_naming_the_listener(
    sasl_ssl_broker: LocalBroker, tmp_path: Path
) -> None:
    listener = secure(sasl_ssl_broker)
    src, out, group = topics(listener)
    stranger = SaslSslListener("127.0.0.1:1", tmp_path)
    ensure_tls_material(stranger)  # a CA of its own, which never signed the broker's certificate
    kafka = {**listener.kafka_section(), "ssl_cafile": str(stranger.ca_file)}
    with pytest.raises(StreamError, match="certificate is not trusted") as failed:
        Pipeline(config(kafka, group, src, out)).start()
    assert str(failed.value).startswith(
        f"{listener.bootstrap} | SASL_SSL SCRAM-SHA-512 TLS handshake failed"
    )


def test_run_over_sasl_ssl_logs_no_secret_and_binds_the_metrics_host(
    sasl_ssl_broker: LocalBroker, tmp_path: Path
) -> None:
    listener = secure(sasl_ssl_broker)
    password = listener.settings().sasl_password
    assert password
    src, out, group = topics(listener)
    run_doc = doc(listener.kafka_section(), group, src, out)
    run_doc["metrics"] = {"enabled": True, "port": 0}  # host from --metrics-host below
    cfg = tmp_path / "sasl.yaml"
    cfg.write_text(yaml.safe_dump(run_doc))
    assert password not in cfg.read_text()

    validated = streamfer("validate", "-c", str(cfg))
    assert validated.returncode == 0 and password not in validated.stdout + validated.stderr

    log = tmp_path / "run.log"
    with log.open("wb") as sink:  # -vv: kafka-python and streamfer debug logs included
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamfer.pipeline.cli", "-vv", "run", "-c", str(cfg),
             "--metrics-host", "127.0.0.1"],
            cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: "metrics on http://" in log.read_text(), 60, "streamfer run to start")
        found = re.search(r"metrics on http://([\d.]+):(\d+)", log.read_text())
        assert found is not None and found.group(1) == "127.0.0.1"
        port = int(found.group(2))
        assert urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        assert not _accepts("127.0.0.2", port)  # loopback, but not the bound address
        with KafkaSink(listener.settings(client_id="feed")) as sink:
            produce(sink, src, transaction_feed(seed=12), count=20)
        wait_for(lambda: len(read_all(sasl_ssl_broker.bootstrap, out, lambda m: len(m) >= 20,
                                      timeout_s=1)) >= 20, 60, "20 decisions")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "DEBUG" in text  # the verbose logs were there to look at
    assert password not in text


def streamfer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamfer.pipeline.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0
