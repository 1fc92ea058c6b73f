"""Config: every topic a stream names is one Kafka would accept (config.checks.topic_problems)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamfer.errors import ConfigError
from streamfer.pipeline.config import load_config
from streamfer.pipeline.config.checks import topic_name_problem


def write(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def base(**stream: object) -> dict:
    s = {"name": "payments", "kind": "transaction", "input_topic": "payments.tx",
         "output_topic": "payments.decisions", "model": "fraud", **stream}  # fmt: skip
    return {"models": {"fraud": {"path": "fraud.onnx"}}, "streams": [s]}


def problems_of(tmp_path: Path, doc: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, doc))
    return str(info.value)


@pytest.mark.parametrize(
    "name",
    ["payments.tx", "a", "A-b_c.9", "x" * 249, "..a", "a..", "-", "_"],
)
def test_names_kafka_accepts(name: str) -> None:
    assert topic_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty topic name"),
        (".", "'.' is not a topic name"),
        ("..", "'..' is not a topic name"),
        ("x" * 250, "topic name of 250 characters is too long"),
        ("pay ments", "characters Kafka refuses (' ')"),
        ("payments/tx", "characters Kafka refuses ('/')"),
        ("zahlungen.ä", "characters Kafka refuses ('ä')"),
        ("a:b*c", "characters Kafka refuses ('*:')"),
    ],
)
def test_names_kafka_refuses_say_why(name: str, why: str) -> None:
    problem = topic_name_problem(name)
    assert problem is not None and why in problem


def test_each_topic_key_is_named_with_its_value(tmp_path: Path) -> None:
    doc = base(input_topic="pay ments", output_topic="..", dlq_topic="d" * 250)
    text = problems_of(tmp_path, doc)
    assert "3 problems" in text
    assert "streams[0].input_topic | topic name with characters Kafka refuses (' ') " \
           "(got 'pay ments')" in text  # fmt: skip
    assert "streams[0].output_topic | '..' is not a topic name (got '..')" in text
    assert "streams[0].dlq_topic | topic name of 250 characters is too long" in text
    assert "Note: allowed: 1 to 249 characters, letters, digits, '.', '_' and '-' only" in text


def test_an_empty_topic_is_refused(tmp_path: Path) -> None:
    text = problems_of(tmp_path, base(output_topic=""))
    assert "streams[0].output_topic" in text and "(got '')" in text


def test_derived_dead_letter_and_changelog_names_are_checked(tmp_path: Path) -> None:
    long_input = "i" * 247  # fits; its default dead-letter topic (+".dlq") does not
    text = problems_of(tmp_path, base(input_topic=long_input))
    assert "streams[0].dlq_topic | the default dead-letter topic: topic name of 251" in text
    doc = base(state={"enabled": True})
    doc["consumer"] = {"group_id": "fraud team"}
    text = problems_of(tmp_path, doc)
    assert "streams[0].name | the state changelog topic" in text
    assert "(got 'fraud team.payments.state')" in text


def test_valid_topics_pass(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base(dlq_topic="payments.dead-letters_v2")))
    assert cfg.streams[0].resolved_dlq_topic == "payments.dead-letters_v2"
