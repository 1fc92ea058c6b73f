"""Environment overrides, the bootstrap precedence on a config file, and ``config show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from streamfer.errors import ConfigError
from streamfer.pipeline.cli import cli
from streamfer.pipeline.config.sources import env_overrides, load_resolved, masked

OVERRIDE = "STREAMFER__KAFKA__BOOTSTRAP_SERVERS"


def write_config(tmp_path: Path, **kafka: Any) -> Path:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    doc = {
        "kafka": {"client_id": "mine", **kafka},
        "consumer": {"group_id": "g1"},
        "models": {"fraud": {"path": "fraud.onnx"}},
        "streams": [{"name": "pay", "kind": "transaction", "input_topic": "tx",
                     "output_topic": "out", "model": "fraud",
                     "processor_config": {}}],
    }  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMFER__") or name == "STREAMFER_BOOTSTRAP":
            monkeypatch.delenv(name)


# -- bootstrap precedence on a real file, every source -------------------------------------
@pytest.mark.parametrize(
    ("flag", "in_file", "env", "expected", "source"),
    [
        ("flag:1", True, {OVERRIDE: "ovr:2", "STREAMFER_BOOTSTRAP": "plain:3"}, "flag:1",
         "flag (--bootstrap)"),
        (None, True, {OVERRIDE: "ovr:2", "STREAMFER_BOOTSTRAP": "plain:3"}, "ovr:2",
         f"env ({OVERRIDE})"),
        (None, True, {"STREAMFER_BOOTSTRAP": "plain:3"}, "file:9", "file"),
        (None, False, {"STREAMFER_BOOTSTRAP": "plain:3"}, "plain:3", "env (STREAMFER_BOOTSTRAP)"),
        (None, False, {}, "127.0.0.1:9092", "default"),
    ],
)  # fmt: skip
def test_bootstrap_precedence_on_a_config_file(
    tmp_path: Path, flag: str | None, in_file: bool, env: dict[str, str], expected: str,
    source: str,
) -> None:  # fmt: skip
    path = write_config(tmp_path, **({"bootstrap_servers": "file:9"} if in_file else {}))
    resolved = load_resolved(path, bootstrap=flag, environ=env)
    assert resolved.config.kafka.bootstrap_servers == expected
    assert resolved.source("kafka", "bootstrap_servers") == source


# -- environment overrides -------------------------------------------------------------------
def test_env_overrides_set_keys_of_top_level_sections_as_yaml_scalars(tmp_path: Path) -> None:
    env = {
        "STREAMFER__CONSUMER__MAX_POLL_RECORDS": "7",
        "STREAMFER__METRICS__ENABLED": "false",
        "STREAMFER__RUNTIME__DRAIN_TIMEOUT_S": "2.5",
        "STREAMFER__KAFKA__CLIENT_ID": "from-env",
        "STREAMFER__PRODUCER__COMPRESSION_TYPE": "lz4",
        "STREAMFER__KAFKA__BOOTSTRAP_SERVERS": "10:30",  # a host, not YAML's base 60
        "UNRELATED": "x",
    }
    resolved = load_resolved(write_config(tmp_path), environ=env)
    cfg = resolved.config
    assert cfg.consumer.max_poll_records == 7
    assert cfg.metrics.enabled is False
    assert cfg.runtime.drain_timeout_s == 2.5
    assert cfg.kafka.client_id == "from-env"
    assert cfg.producer.compression_type == "lz4"
    assert cfg.kafka.bootstrap_servers == "10:30"
    assert resolved.source("consumer", "max_poll_records") == (
        "env (STREAMFER__CONSUMER__MAX_POLL_RECORDS)"
    )
    assert resolved.source("consumer", "group_id") == "file"
    assert resolved.source("consumer", "fetch_max_wait_ms") == "default"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("STREAMFER__NOSUCH__KEY", "STREAMFER__NOSUCH__KEY | not a config override: no section "
         "'nosuch'. Note: expected STREAMFER__<SECTION>__<KEY> with a section of: kafka, "
         "consumer, producer, metrics, runtime"),
        ("STREAMFER__CONSUMER__NOSUCH", "STREAMFER__CONSUMER__NOSUCH | section consumer has no "
         "key 'nosuch'. Note: allowed: group_id, max_poll_records"),
        ("STREAMFER__KAFKA", "STREAMFER__KAFKA | not a config override"),
        ("STREAMFER__STREAMS__NAME", "no section 'streams'"),  # a list, not a section
    ],
)  # fmt: skip
def test_an_unknown_section_or_key_fails_naming_the_variable(
    tmp_path: Path, name: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_resolved(write_config(tmp_path), environ={name: "1"})
    assert expected in str(err.value)
    with pytest.raises(ConfigError):
        env_overrides({name: "1"})


def test_a_bad_override_value_is_reported_with_the_variable(tmp_path: Path) -> None:
    env = {"STREAMFER__CONSUMER__MAX_POLL_RECORDS": "many"}
    with pytest.raises(ConfigError) as err:
        load_resolved(write_config(tmp_path), environ=env)
    text = str(err.value)
    assert "(with STREAMFER__CONSUMER__MAX_POLL_RECORDS)" in text
    assert "consumer.max_poll_records | " in text and "(got 'many')" in text


def test_validate_applies_the_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    monkeypatch.setenv("STREAMFER__CONSUMER__NOSUCH", "1")
    result = CliRunner().invoke(cli, ["validate", "-c", str(path)])
    assert result.exit_code != 0 and "STREAMFER__CONSUMER__NOSUCH" in str(result.exception)
    monkeypatch.delenv("STREAMFER__CONSUMER__NOSUCH")
    monkeypatch.setenv(OVERRIDE, "env-host:1")
    result = CliRunner().invoke(cli, ["validate", "-c", str(path)])
    assert result.exit_code == 0 and "kafka env-host:1 (PLAINTEXT)" in result.output
    result = CliRunner().invoke(cli, ["validate", "-c", str(path), "--bootstrap", "flag:2"])
    assert result.exit_code == 0 and "kafka flag:2 (PLAINTEXT)" in result.output


# -- config show -----------------------------------------------------------------------------
def show(*args: str) -> str:
    result = CliRunner().invoke(cli, ["config", "show", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_show_yaml_has_every_default_and_each_values_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    monkeypatch.setenv("STREAMFER__METRICS__PORT", "0")
    out = show("-c", str(path), "--bootstrap", "flag-host:1")
    lines = out.splitlines()
    assert "  bootstrap_servers: 'flag-host:1'  # flag (--bootstrap)" in lines
    assert "  client_id: mine  # file" in lines
    assert "  port: 0  # env (STREAMFER__METRICS__PORT)" in lines
    assert "  max_poll_records: 500  # default" in lines  # a default filled in
    assert "  - name: pay  # file" in lines
    # the latency profile's values are shown resolved, each naming the profile
    assert "    batching:" in lines and "      max_wait_ms: 1.0  # profile (low)" in lines
    assert "      profile: low  # default (transaction stream)" in lines
    assert "      linger_ms: 0  # profile (low)" in lines
    # an unset state flush interval says what it is for the stream's delivery
    assert "      flush_interval_ms: null  # default (1000 ms, at_least_once)" in lines
    # every value line says where it came from, and the whole is valid YAML of the config
    values = [ln for ln in lines[1:] if not ln.rstrip().endswith(":")]
    sources = ("# file", "# default", "# env (", "# flag (--bootstrap)", "# profile (low)",
               "# default (transaction stream)", "# default (1000 ms, at_least_once)")
    assert values and all(ln.rstrip().endswith(sources) or "# env (" in ln for ln in values)
    doc = yaml.safe_load(out)
    assert doc["kafka"]["bootstrap_servers"] == "flag-host:1"
    assert doc["streams"][0]["batching"]["max_batch"] == 32
    assert doc["models"]["fraud"]["path"] == str(tmp_path / "fraud.onnx")


def test_show_json_has_a_parallel_sources_mapping(tmp_path: Path) -> None:
    out = json.loads(show("-c", str(write_config(tmp_path)), "--format", "json"))
    config, sources = out["config"], out["sources"]
    assert config["consumer"]["group_id"] == "g1" and sources["consumer"]["group_id"] == "file"
    assert sources["consumer"]["max_poll_records"] == "default"
    assert sources["kafka"]["bootstrap_servers"] == "default"
    assert sources["streams"][0]["batching"]["max_batch"] == "default"
    assert sources["streams"][0]["processor_config"] == "file"

    def shape(node: Any) -> Any:
        if isinstance(node, dict) and node:
            return {k: shape(v) for k, v in node.items()}
        if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
            return [shape(v) for v in node]
        return None

    assert shape(config) == shape(sources)


def test_show_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                        sasl_username="svc", sasl_password="hunter2")  # fmt: skip
    monkeypatch.setenv("STREAMFER__KAFKA__SASL_PASSWORD", "from-env-secret")
    for fmt in ("yaml", "json"):
        out = show("-c", str(path), "--format", fmt)
        assert "hunter2" not in out and "from-env-secret" not in out
        assert "***" in out
    assert "  sasl_password: '***'  # env (STREAMFER__KAFKA__SASL_PASSWORD)" in show(
        "-c", str(path)
    ).splitlines()
    raw = {"a": {"api_token": "t", "Secret_Key": "s", "token_file": "/f", "n": None,
                 "x": [{"password": "p"}]}}  # fmt: skip
    assert masked(raw) == {"a": {"api_token": "***", "Secret_Key": "***", "token_file": "/f",
                                 "n": None, "x": [{"password": "***"}]}}  # fmt: skip


def test_show_a_shipped_config_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFER_BOOTSTRAP", "plain:3")
    out = show("-c", "fraud")
    lines = out.splitlines()
    assert lines[0].startswith("# ") and lines[0].endswith("fraud.yaml")
    assert "  bootstrap_servers: 'plain:3'  # env (STREAMFER_BOOTSTRAP)" in lines
    assert "  group_id: streamfer-fraud  # file" in lines
    assert yaml.safe_load(out)["streams"][0]["name"] == "payments"


def test_show_names_a_pipeline_wide_key_over_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    monkeypatch.setenv("STREAMFER__PRODUCER__LINGER_MS", "7")
    lines = show("-c", str(path)).splitlines()
    env = "STREAMFER__PRODUCER__LINGER_MS"
    assert f"      linger_ms: 7  # producer.linger_ms (env ({env}))" in lines
    assert "      fetch_max_wait_ms: 5  # profile (low)" in lines


def test_show_says_an_exactly_once_stream_flushes_its_state_at_every_commit(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["streams"][0]["delivery"] = "exactly_once"
    path.write_text(yaml.safe_dump(doc))
    lines = show("-c", str(path)).splitlines()
    assert "      flush_interval_ms: null  # default (at every commit, exactly_once)" in lines
