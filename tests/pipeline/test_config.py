"""Config: defaults, derived values, and every problem reported with key, value and allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from streamfer.errors import ConfigError
from streamfer.pipeline.config import load_config

MODELS = ("fraud", "sensor", "camera")


def write(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def base(**stream: object) -> dict:
    s = {
        "name": "payments",
        "kind": "transaction",
        "input_topic": "payments.tx",
        "output_topic": "payments.decisions",
        "model": "fraud",
    }
    s.update(stream)
    return {"models": {"fraud": {"path": "fraud.onnx"}}, "streams": [s]}


def problems_of(tmp_path: Path, doc: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, doc))
    return str(info.value)


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base()))
    s = cfg.streams[0]
    assert s.resolved_dlq_topic == "payments.tx.dlq"
    assert s.delivery == "at_least_once" and s.mode == "realtime"
    assert not s.drops_stale
    assert cfg.models["fraud"].path == tmp_path / "fraud.onnx"  # relative to the file
    with pytest.raises(ValidationError):  # frozen
        s.mode = "replay"  # type: ignore[misc]


def test_camera_drops_stale_by_default_but_not_in_replay(tmp_path: Path) -> None:
    cam = base(kind="camera", deadline_ms=100)
    assert load_config(write(tmp_path, cam)).streams[0].drops_stale
    replay = base(kind="camera", deadline_ms=100, mode="replay")
    assert not load_config(write(tmp_path, replay)).streams[0].drops_stale


def test_every_problem_is_listed_with_file_key_value_and_allowed(tmp_path: Path) -> None:
    doc = base(kind="video", batching={"max_batch": 0})
    doc["models"]["fraud"]["precision"] = "fp8"
    doc["kafka"] = {"colour": "red"}
    doc["streams"].append(
        {
            "name": "payments",
            "kind": "transaction",
            "input_topic": "other",
            "output_topic": "o",
            "model": "nope",
            "drop_stale": True,
            "deadline_ms": 5,
        }
    )
    text = problems_of(tmp_path, doc)
    path = str(tmp_path / "pipeline.yaml")
    lines = text.splitlines()
    assert lines[0].startswith(f"{path} | 7 problems")
    expected = [
        "kafka.colour | unknown key (got 'colour'). Note: allowed: bootstrap_servers",
        "models.fraud.precision | Input should be 'fp32', 'fp16' or 'int8' (got 'fp8')."
        " Note: allowed: fp32, fp16, int8",
        "streams[0].kind | Input should be 'camera', 'sensor', 'sensor-sample', 'transaction' "
        "or 'custom' (got 'video')",
        "streams[0].batching.max_batch | Input should be greater than or equal to 1 (got 0)."
        " Note: allowed: >= 1",
        "streams[1].model | unknown model (got 'nope'). Note: allowed: fraud",
        "streams[1].name | duplicate of streams[0].name (got 'payments')",
        "streams[1].drop_stale | transactions are never dropped (got True)",
    ]
    for want in expected:
        assert any(want in line and line.strip().startswith(path) for line in lines), want


def test_cross_field_rules(tmp_path: Path) -> None:
    doc = base(latest_per_key=True, fraud={"review": 0.95, "decline": 0.9}, detection={"iou": 0.5})
    doc["models"]["fraud"]["max_batch"] = 8
    doc["streams"][0]["batching"] = {"max_batch": 16}
    text = problems_of(tmp_path, doc)
    assert "streams[0].latest_per_key | transactions are never superseded" in text
    assert "streams[0].fraud.review | review threshold above decline threshold (got 0.95)" in text
    assert "streams[0].detection | applies to camera streams only" in text
    assert "streams[0].batching.max_batch | exceeds models.fraud.max_batch (got 16)" in text


def test_missing_model_file_and_sasl_without_credentials(tmp_path: Path) -> None:
    doc = base()
    doc["models"]["fraud"]["path"] = "missing.onnx"
    doc["kafka"] = {"security_protocol": "SASL_SSL", "sasl_password": "hunter2"}
    text = problems_of(tmp_path, doc)
    assert "models.fraud.path | file not found" in text
    assert "kafka.sasl_mechanism | required with security_protocol SASL_SSL" in text
    assert "kafka.sasl_username | SASL needs sasl_username and sasl_password" in text


def test_topics_are_created_by_default_and_the_replication_factor_is_checked(
    tmp_path: Path,
) -> None:
    kafka = load_config(write(tmp_path, base())).kafka
    assert kafka.create_topics is True and kafka.topic_replication_factor is None  # broker default
    doc = base()
    doc["kafka"] = {"create_topics": "sometimes", "topic_replication_factor": 0}
    text = problems_of(tmp_path, doc)
    assert "kafka.create_topics | Input should be a valid boolean" in text and "sometimes" in text
    assert "kafka.topic_replication_factor | Input should be greater than or equal to 1" in text
    doc["kafka"] = {"create_topics": False, "topic_replication_factor": 3}
    kafka = load_config(write(tmp_path, doc)).kafka
    assert kafka.create_topics is False and kafka.topic_replication_factor == 3


def test_secrets_are_never_printed(tmp_path: Path) -> None:
    doc = base()
    doc["kafka"] = {"sasl_password": ["not", "a", "string", "hunter2"]}
    text = problems_of(tmp_path, doc)
    assert "kafka.sasl_password" in text and "hunter2" not in text
    doc["kafka"] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
        "sasl_password": "hunter2",
    }
    cfg = load_config(write(tmp_path, doc))
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.summary()


def sasl_ssl(**kafka: object) -> dict:
    doc = base()
    doc["kafka"] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc",
        **kafka,
    }
    return doc


def test_the_password_can_come_from_a_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "kafka-password").write_text("hunter2\n")
    cfg = load_config(write(tmp_path, sasl_ssl(sasl_password_file="secrets/kafka-password")))
    assert cfg.kafka.sasl_password_file == tmp_path / "secrets" / "kafka-password"
    assert cfg.kafka.sasl_password is None
    assert cfg.kafka.to_settings().sasl_password == "hunter2"  # read when clients are made
    assert "hunter2" not in repr(cfg) + cfg.summary()


def test_password_file_problems_show_the_path_and_never_a_password(tmp_path: Path) -> None:
    text = problems_of(tmp_path, sasl_ssl(sasl_password_file="absent"))
    assert f"kafka.sasl_password_file | file not found (got '{tmp_path / 'absent'}')" in text
    (tmp_path / "pw").write_text("from-file")
    text = problems_of(tmp_path, sasl_ssl(sasl_password_file="pw", sasl_password="hunter2"))
    assert "kafka.sasl_password_file | set together with sasl_password" in text
    assert "one of sasl_password, sasl_password_file" in text and "hunter2" not in text
    text = problems_of(tmp_path, sasl_ssl())
    assert "SASL needs sasl_username and sasl_password (or sasl_password_file)" in text


def test_metrics_host_defaults_to_every_interface(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, base())).metrics.host == "0.0.0.0"
    doc = base()
    doc["metrics"] = {"host": "127.0.0.1"}
    assert load_config(write(tmp_path, doc)).metrics.host == "127.0.0.1"
    doc["metrics"] = {"host": ""}
    assert "metrics.host | " in problems_of(tmp_path, doc)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_example_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    paths = sorted((root / "deploy" / "configs").glob("*.yaml"))
    if not paths or not all((root / "streamfer" / "models" / f"{m}.onnx").exists() for m in MODELS):
        pytest.skip("example configs or model files not there yet")
    for path in paths:
        if path.name == SASL_EXAMPLE:  # needs the secure broker's files: see below
            continue
        cfg = load_config(path)
        assert cfg.streams, path


SASL_EXAMPLE = "fraud-sasl.yaml"


def test_sasl_example_config_is_valid_once_the_secure_broker_made_its_files(
    tmp_path: Path,
) -> None:
    """The example names the files `streamfer broker start --port 9192 --sasl-ssl` writes."""
    root = Path(__file__).resolve().parents[2]
    example = root / "deploy" / "configs" / SASL_EXAMPLE
    text = example.read_text()
    copy = tmp_path / "deploy" / "configs" / SASL_EXAMPLE  # the same relative paths, in tmp
    copy.parent.mkdir(parents=True)
    copy.write_text(text)
    (tmp_path / "streamfer" / "models").mkdir(parents=True)
    (tmp_path / "streamfer" / "models" / "fraud.onnx").write_bytes(b"onnx")
    broker_files = tmp_path / ".cache" / "kafka" / "data-9192" / "sasl-ssl"
    broker_files.mkdir(parents=True)
    (broker_files / "password").write_text("from-the-broker")
    (broker_files / "ca.pem").write_text("a CA certificate")
    cfg = load_config(copy)
    assert (cfg.kafka.security_protocol, cfg.kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:9194"
    assert cfg.kafka.ssl_cafile == broker_files / "ca.pem"
    assert cfg.kafka.to_settings().sasl_password == "from-the-broker"
    assert "sasl_password:" not in text  # the example never holds a password


def test_dead_letter_failures_and_the_delivery_timeout(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base()))
    assert cfg.streams[0].dead_letters.on_failure == "stop"
    knobs = cfg.streams[0].knobs
    assert cfg.producer.options(knobs).delivery_timeout_ms == cfg.producer.delivery_timeout_ms
    doc = base(dead_letters={"on_failure": "skip"})
    doc["producer"] = {"delivery_timeout_ms": 5000}
    cfg = load_config(write(tmp_path, doc))
    assert cfg.producer.options(cfg.streams[0].knobs).delivery_timeout_ms == 5000
    doc = base(delivery="exactly_once", dead_letters={"on_failure": "skip"})
    text = problems_of(tmp_path, doc)
    key = "streams[0].dead_letters.on_failure"
    assert f"{key} | a refused dead letter aborts the transaction" in text
    assert "Note: allowed: stop, skip with delivery: at_least_once" in text


def test_state_flush_interval_applies_to_at_least_once_only(tmp_path: Path) -> None:
    stream = load_config(write(tmp_path, base(state={"enabled": True}))).streams[0]
    assert stream.state.flush_interval_s(exactly_once=False) == 1.0  # the default window
    assert stream.state.flush_interval_s(exactly_once=True) == 0.0  # every transaction
    doc = base(state={"enabled": True, "flush_interval_ms": 250})
    assert load_config(write(tmp_path, doc)).streams[0].state.flush_interval_s(False) == 0.25
    doc = base(delivery="exactly_once", state={"enabled": True, "flush_interval_ms": 250})
    text = problems_of(tmp_path, doc)
    assert "streams[0].state.flush_interval_ms | exactly_once writes the changelog" in text
    assert "(got 250)" in text


def test_reading_a_config_loads_no_model_library() -> None:
    """`streamfer validate`, `config show` and every command that reads a config start
    without ONNX (about a second and a half on a small VM), ONNX Runtime or kafka-python."""
    import subprocess
    import sys

    shipped = Path(__file__).resolve().parents[2] / "deploy" / "configs" / "fraud.yaml"
    code = (
        "import sys\nfrom streamfer.pipeline.config import load_config\n"
        "load_config(sys.argv[1])\n"
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'kafka') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(shipped)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
